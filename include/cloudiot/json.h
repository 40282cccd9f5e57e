/**
 * @file json.h
 * @brief JSON in caller memory: a writer that never allocates.
 *
 * Everything here works on the caller's bytes (pointer + length, no NUL
 * needed) and allocates nothing.
 */
#ifndef CLOUDIOT_JSON_H
#define CLOUDIOT_JSON_H

#include <cloudiot/common.h>

CIOT_BEGIN_DECLS

/* ------------------------------------------------------------------------ */
/* JSON writer                                                              */
/* ------------------------------------------------------------------------ */

/**
 * The deepest nesting of arrays and objects the writer accepts (counting the
 * containers written with ciot_json_raw()). One more gives CIOT_EDEPTH.
 */
#define CIOT_JSON_MAX_DEPTH 64

/**
 * A JSON writer: caller-owned storage, typically on the stack.
 *
 * The contents are private to the library and may change between releases;
 * only the size of the struct is part of the ABI (it keeps spare room for
 * that). Set it up with ciot_json_writer_init(); it holds no resources, so
 * there is nothing to free. One writer must not be used from two threads at
 * once; distinct writers are independent.
 *
 * How it behaves:
 * - It writes compact JSON (no white space except inside ciot_json_raw()
 *   input) into the buffer given to ciot_json_writer_init().
 * - The top level is exactly one value of any type; inside an object every
 *   value is preceded by ciot_json_key(). Anything else (a value where a key
 *   is due, a key outside an object or twice in a row, an end that does not
 *   match the open container, a second top-level value, finishing with open
 *   containers or with nothing written) is refused with CIOT_ESTATE. The
 *   writer never produces malformed JSON.
 * - Errors are sticky: after the first error, every call on the writer,
 *   ciot_json_writer_finish() included, returns that same error.
 * - Running out of buffer is not an error of the individual calls: they
 *   return 0, keep checking the structure and keep counting, and
 *   ciot_json_writer_finish() returns CIOT_ENOSPC with the exact number of
 *   bytes needed. Initialising with (NULL, 0) therefore measures a document.
 * - The writer may use the whole buffer as scratch space: after CIOT_ENOSPC
 *   its contents are unspecified, and after success the bytes past the
 *   document (and its NUL) may have changed. It never writes outside it.
 * - Duplicate keys are not detected.
 * - A document whose size would not fit in a size_t gives CIOT_ERANGE
 *   (sticky, like every error).
 */
typedef struct ciot_json_writer {
    uint64_t reserved_[16]; /**< private; do not touch */
} ciot_json_writer;

/**
 * Starts a document in @p buf.
 *
 * @param w   the writer to set up (its previous contents are ignored)
 * @param buf where the JSON goes; may be NULL when @p cap is 0 (to measure)
 * @param cap size of @p buf in bytes
 *
 * @retval 0           ready
 * @retval CIOT_EINVAL @p w is NULL, or @p buf is NULL while @p cap is not 0
 *                     (the writer, if not NULL, is then in that error state)
 */
CIOT_API CIOT_NODISCARD int ciot_json_writer_init(ciot_json_writer *w, char *buf, size_t cap);

/**
 * Opens an object (`{`), as a value.
 * @retval 0            written (or counted)
 * @retval CIOT_ESTATE  a value is not allowed here
 * @retval CIOT_EDEPTH  more than CIOT_JSON_MAX_DEPTH containers would be open
 * @retval CIOT_EINVAL  @p w is NULL or not initialised
 * or the writer's earlier error.
 */
CIOT_API CIOT_NODISCARD int ciot_json_begin_object(ciot_json_writer *w);

/**
 * Closes the innermost object (`}`).
 * @retval 0            written (or counted)
 * @retval CIOT_ESTATE  the innermost open container is not an object, or a
 *                      key is waiting for its value
 * @retval CIOT_EINVAL  @p w is NULL or not initialised
 * or the writer's earlier error.
 */
CIOT_API CIOT_NODISCARD int ciot_json_end_object(ciot_json_writer *w);

/**
 * Opens an array (`[`), as a value.
 * @retval 0            written (or counted)
 * @retval CIOT_ESTATE  a value is not allowed here
 * @retval CIOT_EDEPTH  more than CIOT_JSON_MAX_DEPTH containers would be open
 * @retval CIOT_EINVAL  @p w is NULL or not initialised
 * or the writer's earlier error.
 */
CIOT_API CIOT_NODISCARD int ciot_json_begin_array(ciot_json_writer *w);

/**
 * Closes the innermost array (`]`).
 * @retval 0            written (or counted)
 * @retval CIOT_ESTATE  the innermost open container is not an array
 * @retval CIOT_EINVAL  @p w is NULL or not initialised
 * or the writer's earlier error.
 */
CIOT_API CIOT_NODISCARD int ciot_json_end_array(ciot_json_writer *w);

/**
 * Writes an object member's key; the next call must write its value.
 *
 * @p key is @p len bytes of UTF-8 (no NUL needed; embedded NULs are written
 * as `\u0000`), escaped like ciot_json_string().
 *
 * @retval 0            written (or counted)
 * @retval CIOT_ESTATE  not directly inside an object, or a key is already
 *                      waiting for its value
 * @retval CIOT_EINVAL  @p key is not valid UTF-8, or is NULL with @p len > 0,
 *                      or @p w is NULL or not initialised
 * or the writer's earlier error.
 */
CIOT_API CIOT_NODISCARD int ciot_json_key(ciot_json_writer *w, const char *key, size_t len);

/**
 * Writes a string value.
 *
 * @p s is @p len bytes (no NUL needed) that must be valid UTF-8: invalid
 * input (a stray continuation byte, an overlong form, an encoded surrogate
 * U+D800..U+DFFF, a code point above U+10FFFF, a truncated sequence) is
 * REJECTED with CIOT_EINVAL, never replaced. `"` and `\` are escaped,
 * control characters U+0000..U+001F are written as `\b \f \n \r \t` or
 * `\u00XX`; everything else, `/` and DEL included, is copied unchanged.
 *
 * @retval 0            written (or counted)
 * @retval CIOT_ESTATE  a value is not allowed here
 * @retval CIOT_EINVAL  invalid UTF-8, @p s NULL with @p len > 0, or @p w NULL
 *                      or not initialised
 * or the writer's earlier error.
 */
CIOT_API CIOT_NODISCARD int ciot_json_string(ciot_json_writer *w, const char *s, size_t len);

/**
 * Writes a number from a double, in the shortest text that reads back as
 * the very same double (bit for bit, -0.0 included) with a correctly
 * rounding parser such as strtod.
 *
 * The text always reads back as a real, never as an integer: integral
 * values get `.0` (`27.0`, `-0.0`), and magnitudes below 1e-5 or from 1e16
 * up use an exponent (`1e300`, `2.5e-7`, `4.9406564584124654e-324`).
 *
 * @retval 0            written (or counted)
 * @retval CIOT_ESTATE  a value is not allowed here
 * @retval CIOT_EINVAL  @p v is NaN or infinite (JSON has no such numbers), or
 *                      @p w is NULL or not initialised
 * or the writer's earlier error.
 */
CIOT_API CIOT_NODISCARD int ciot_json_double(ciot_json_writer *w, double v);

/**
 * Writes an integer number (`-9223372036854775808` … `9223372036854775807`).
 * @retval 0            written (or counted)
 * @retval CIOT_ESTATE  a value is not allowed here
 * @retval CIOT_EINVAL  @p w is NULL or not initialised
 * or the writer's earlier error.
 */
CIOT_API CIOT_NODISCARD int ciot_json_int(ciot_json_writer *w, int64_t v);

/**
 * Writes `true` or `false`.
 * @retval 0            written (or counted)
 * @retval CIOT_ESTATE  a value is not allowed here
 * @retval CIOT_EINVAL  @p w is NULL or not initialised
 * or the writer's earlier error.
 */
CIOT_API CIOT_NODISCARD int ciot_json_bool(ciot_json_writer *w, bool v);

/**
 * Writes `null`.
 * @retval 0            written (or counted)
 * @retval CIOT_ESTATE  a value is not allowed here
 * @retval CIOT_EINVAL  @p w is NULL or not initialised
 * or the writer's earlier error.
 */
CIOT_API CIOT_NODISCARD int ciot_json_null(ciot_json_writer *w);

/**
 * Copies already-encoded JSON as one value, after checking it.
 *
 * @p json must be exactly one JSON value (RFC 8259, UTF-8, optional white
 * space around it; `\u` escapes of lone surrogates are refused), whose
 * nesting, added to the containers open in the writer, stays within
 * CIOT_JSON_MAX_DEPTH. It is copied byte for byte, white space included.
 *
 * @retval 0            written (or counted)
 * @retval CIOT_ESTATE  a value is not allowed here
 * @retval CIOT_EINVAL  @p json is not exactly one valid JSON value, or is
 *                      NULL with @p len > 0, or @p w is NULL or not
 *                      initialised
 * @retval CIOT_EDEPTH  @p json nests too deep at this place
 * or the writer's earlier error.
 */
CIOT_API CIOT_NODISCARD int ciot_json_raw(ciot_json_writer *w, const char *json, size_t len);

/**
 * Writes a timestamp as a JSON string: `"2026-11-26T04:56:27.123Z"`, the
 * text of ciot_timestamp_format() (see <cloudiot/timestamp.h>) in quotes.
 *
 * @param unix_ms milliseconds since 1970-01-01T00:00:00Z (negative before)
 *
 * @retval 0            written (or counted)
 * @retval CIOT_ESTATE  a value is not allowed here
 * @retval CIOT_ERANGE  the year is outside 0000..9999
 * @retval CIOT_EINVAL  @p w is NULL or not initialised
 * or the writer's earlier error.
 */
CIOT_API CIOT_NODISCARD int ciot_json_timestamp(ciot_json_writer *w, int64_t unix_ms);

/**
 * Ends the document and reports its length.
 *
 * The output is exactly @p *out_len bytes at the start of the buffer. A NUL
 * is written after it when the buffer has room for one (cap > *out_len);
 * the NUL is never counted and never required. Calling it again returns the
 * same result; any other call after finish is CIOT_ESTATE (and, like every
 * error, sticky).
 *
 * @param w       the writer
 * @param out_len the length of the document, without any NUL; on
 *                CIOT_ENOSPC, the buffer size needed for it (again without
 *                a NUL). May be NULL.
 *
 * @retval 0            complete; the document is in the buffer
 * @retval CIOT_ENOSPC  complete, but the buffer was too small; *out_len says
 *                      how many bytes are needed
 * @retval CIOT_ESTATE  containers are still open, or nothing was written
 * @retval CIOT_EINVAL  @p w is NULL or not initialised
 * or the writer's earlier error (then *out_len is not set).
 */
CIOT_API CIOT_NODISCARD int ciot_json_writer_finish(ciot_json_writer *w, size_t *out_len);

/* ------------------------------------------------------------------------ */

CIOT_END_DECLS

#endif /* CLOUDIOT_JSON_H */
