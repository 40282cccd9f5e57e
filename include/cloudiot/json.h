/**
 * @file json.h
 * @brief JSON in caller memory: a writer that never allocates and an
 *        on-demand reader that never builds a tree.
 *
 * Everything here works on the caller's bytes (pointer + length, no NUL
 * needed) and allocates nothing. In this module the output parameters come
 * last (`ciot_json_writer_finish(w, &len)`), as the signatures fixed by the
 * project's core issue have them; elsewhere outputs come first.
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
#define CIOT_JSON_WRITER_MAX_DEPTH 64

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
 * - The writer may use the whole buffer as scratch space: after any error
 *   (CIOT_ENOSPC included) its contents are unspecified, and after success the bytes past the
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
 * @retval CIOT_EDEPTH  more than CIOT_JSON_WRITER_MAX_DEPTH containers would be open
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
 * @retval CIOT_EDEPTH  more than CIOT_JSON_WRITER_MAX_DEPTH containers would be open
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
 * @retval CIOT_ERANGE  @p len is so large that its escaped size cannot be counted
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
 * @retval CIOT_ERANGE  @p len is so large that its escaped size cannot be counted
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
 * up use an exponent (`1e300`, `2.5e-7`, `5e-324`).
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
 * CIOT_JSON_WRITER_MAX_DEPTH. It is copied byte for byte, white space included.
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


/* ---- reader ---- */

/**
 * @defgroup json_reader On-demand JSON reader
 *
 * Looks fields up by path in a JSON text and returns views of their bytes,
 * without building a tree. The grammar is RFC 8259, strictly:
 * - any value is accepted at the top level; whitespace is only space, tab,
 *   CR and LF; nothing but whitespace may follow the value;
 * - no comments, no trailing commas, no single quotes, no unquoted keys,
 *   no NaN/Infinity, no leading zeros (`01`), no `+1`, `.5`, `1.` or `1e`;
 * - strings must be valid UTF-8 (no overlong forms, no encoded surrogates,
 *   nothing above U+10FFFF), must not contain raw control characters
 *   (U+0000..U+001F), may only use the escapes of RFC 8259, and a `\uD800`..
 *   `\uDBFF` escape must be followed by a `\uDC00`..`\uDFFF` escape (lone
 *   surrogates are rejected); `\u0000` is accepted and decodes to a NUL byte;
 * - containers nest at most #CIOT_JSON_READER_MAX_DEPTH deep (the outermost
 *   container is depth 1); deeper input gets #CIOT_EDEPTH;
 * - numbers of any size and precision are valid JSON; only the typed getters
 *   say whether they fit a double or an int64.
 *
 * Duplicate keys are accepted; the **last** occurrence wins for lookups
 * (as in jansson and ECMAScript JSON.parse), while iteration yields every
 * member in document order.
 *
 * Malformed input always gets #CIOT_EINVAL (or #CIOT_EDEPTH), never a crash
 * and never a read outside [ptr, ptr + len).
 * @{
 */

/** The deepest nesting of objects and arrays the reader accepts. */
#define CIOT_JSON_READER_MAX_DEPTH 256

/** Type of a JSON value; stored in ciot_json_value::type. */
typedef enum ciot_json_type {
    CIOT_JSON_NULL = 1,   /**< `null` */
    CIOT_JSON_FALSE = 2,  /**< `false` */
    CIOT_JSON_TRUE = 3,   /**< `true` */
    CIOT_JSON_NUMBER = 4, /**< a number (integer or not: see the getters) */
    CIOT_JSON_STRING = 5, /**< a string */
    CIOT_JSON_OBJECT = 6, /**< an object */
    CIOT_JSON_ARRAY = 7   /**< an array */
} ciot_json_type;

/**
 * A view of one JSON value inside the caller's bytes. Public, frozen layout.
 *
 * `ptr`/`len` cover the value's complete raw text exactly as it appears in
 * the document, itself a JSON text: a string includes its quotes and is
 * still escaped (`"a\nb"`), a number is its literal (`27.31`), an object
 * runs from `{` to `}`. So a value can be copied verbatim into other JSON,
 * or handed back to any function here. It borrows the document's bytes and
 * is valid as long as they are.
 */
typedef struct ciot_json_value {
    int type;        /**< a ciot_json_type */
    const char *ptr; /**< first byte of the value's text, inside the document */
    size_t len;      /**< length of the value's text */
} ciot_json_value;

/**
 * Checks that @p json .. @p json + @p len is one complete JSON text.
 *
 * @retval 0            valid
 * @retval CIOT_EINVAL  malformed (including empty input or only whitespace),
 *                      or @p json is NULL with @p len > 0
 * @retval CIOT_EDEPTH  nested deeper than #CIOT_JSON_READER_MAX_DEPTH
 */
CIOT_API CIOT_NODISCARD int ciot_json_validate(const char *json, size_t len);

/**
 * Finds the value at @p path in a JSON text.
 *
 * The whole document is validated (one scan, no allocation): a lookup never
 * succeeds on malformed input, whatever comes after the field. Cost: that
 * scan, plus a scan of each nested container the path descends into.
 *
 * Path syntax: a sequence of steps, `key` / `.key` for an object member and
 * `[N]` (decimal, no leading zeros) for an array element, e.g. `value`,
 * `metadata.unit`, `a[2].c`, `[0][1]`. The first step has no leading dot.
 * Inside a key, `\` escapes the next byte, which must be one of `.` `[` `]`
 * `\` (so the key `a.b` is written `a\.b`); every other byte, including
 * multi-byte UTF-8 and NUL, stands for itself and is compared with the
 * member's unescaped name. An empty path (@p path_len 0) is the root.
 * Empty keys cannot be written in a path: use ciot_json_get_member().
 *
 * @param json      the document (need not be NUL-terminated)
 * @param json_len  its length in bytes
 * @param path      the path; may be NULL when @p path_len is 0
 * @param path_len  its length in bytes
 * @param out       receives the value's type and a view of its text
 *
 * @retval 0              found; @p out set
 * @retval CIOT_ENOTFOUND the document is valid but has no value at @p path
 *                        (missing key, index past the end, or a step into a
 *                        value of another type, e.g. `a.b` where `a` is a
 *                        number); @p out untouched
 * @retval CIOT_EINVAL    the document or the path is malformed, or @p out
 *                        is NULL, or a pointer is NULL with a length > 0
 * @retval CIOT_EDEPTH    the document nests deeper than #CIOT_JSON_READER_MAX_DEPTH
 */
CIOT_API CIOT_NODISCARD int ciot_json_find(const char *json, size_t json_len, const char *path,
                                           size_t path_len, ciot_json_value *out);

/**
 * Finds the member named @p key (compared with the member's unescaped name,
 * byte for byte; any bytes allowed, none special) of the object @p obj.
 *
 * @p obj is scanned and validated as a JSON text of its own (nesting is
 * counted from it); its ptr/len must cover exactly the object's text, as a
 * view returned by this reader does. The last member with that name wins.
 *
 * @retval 0              found; @p out set
 * @retval CIOT_ENOTFOUND no such member; @p out untouched
 * @retval CIOT_ETYPE     @p obj is not an object
 * @retval CIOT_EINVAL    @p obj's text is malformed, or a NULL argument
 *                        (@p key may be NULL when @p key_len is 0)
 * @retval CIOT_EDEPTH    @p obj nests deeper than #CIOT_JSON_READER_MAX_DEPTH
 */
CIOT_API CIOT_NODISCARD int ciot_json_get_member(const ciot_json_value *obj, const char *key,
                                                 size_t key_len, ciot_json_value *out);

/**
 * Finds element @p index (0-based) of the array @p arr.
 *
 * Scans (and validates) @p arr up to that element and the element itself.
 *
 * @retval 0              found; @p out set
 * @retval CIOT_ENOTFOUND @p index is past the end; @p out untouched
 * @retval CIOT_ETYPE     @p arr is not an array
 * @retval CIOT_EINVAL    @p arr's text is malformed, or a NULL argument
 * @retval CIOT_EDEPTH    nesting deeper than #CIOT_JSON_READER_MAX_DEPTH
 */
CIOT_API CIOT_NODISCARD int ciot_json_get_index(const ciot_json_value *arr, size_t index,
                                                ciot_json_value *out);

/**
 * The number @p v as a double, correctly rounded (round to nearest even),
 * whatever its length; the C locale does not matter. A number too small
 * for a double becomes 0 or a subnormal, keeping its sign (`-0` gives -0.0).
 *
 * @retval 0           done
 * @retval CIOT_ETYPE  @p v is not a number
 * @retval CIOT_ERANGE its magnitude is too large for a double (e.g. `1e400`)
 * @retval CIOT_EINVAL @p v's text is not a JSON number, or a NULL argument
 */
CIOT_API CIOT_NODISCARD int ciot_json_get_double(const ciot_json_value *v, double *out);

/**
 * The number @p v as an int64, exactly.
 *
 * Any notation whose value is a whole number is accepted: `42`, `-0`,
 * `1.0`, `1e3`, `2.50e1`; the conversion is done on the decimal digits,
 * never through a double, so `9223372036854775807` is exact.
 *
 * @retval 0           done
 * @retval CIOT_ETYPE  @p v is not a number
 * @retval CIOT_ERANGE the number is not a whole number (`1.5`) or lies
 *                     outside INT64_MIN..INT64_MAX
 * @retval CIOT_EINVAL @p v's text is not a JSON number, or a NULL argument
 */
CIOT_API CIOT_NODISCARD int ciot_json_get_int64(const ciot_json_value *v, int64_t *out);

/**
 * The boolean @p v.
 *
 * @retval 0           done
 * @retval CIOT_ETYPE  @p v is not `true` or `false`
 * @retval CIOT_EINVAL a NULL argument or a text that is not `true`/`false`
 */
CIOT_API CIOT_NODISCARD int ciot_json_get_bool(const ciot_json_value *v, bool *out);

/**
 * Unescapes the string @p v into @p buf as UTF-8, followed by a NUL.
 *
 * Escapes are decoded (`\uXXXX` including surrogate pairs; `\u0000` gives a
 * NUL byte inside the string, so use @p out_len rather than strlen). The
 * string is validated as it is decoded.
 *
 * @param v       a value of type CIOT_JSON_STRING (a key view from
 *                ciot_json_iter_next() works too)
 * @param buf     destination; may be NULL when @p cap is 0
 * @param cap     size of @p buf; the string needs *@p out_len + 1 bytes
 * @param out_len receives the string's length in bytes, without the NUL,
 *                on success and on CIOT_ENOSPC alike (like snprintf)
 *
 * @retval 0           done
 * @retval CIOT_ENOSPC @p buf is too small: nothing useful written (buf[0] is
 *                     NUL when @p cap > 0); *@p out_len + 1 bytes are needed
 * @retval CIOT_ETYPE  @p v is not a string
 * @retval CIOT_EINVAL @p v's text is not a valid JSON string, or a NULL argument
 */
CIOT_API CIOT_NODISCARD int ciot_json_get_string(const ciot_json_value *v, char *buf, size_t cap,
                                                 size_t *out_len);

/**
 * Compares the string @p v, unescaped, with the bytes @p s .. @p s + @p len,
 * without copying it.
 *
 * @retval 0           done; *@p out_equal set
 * @retval CIOT_ETYPE  @p v is not a string
 * @retval CIOT_EINVAL @p v's text is not a valid JSON string, or a NULL
 *                     argument (@p s may be NULL when @p len is 0)
 */
CIOT_API CIOT_NODISCARD int ciot_json_string_equal(const ciot_json_value *v, const char *s,
                                                   size_t len, bool *out_equal);

/**
 * An iterator over the members of an object or the elements of an array.
 *
 * Its contents are reserved: place it anywhere (e.g. on the stack), set it
 * up with ciot_json_iter_init() and touch it only through these functions.
 * Its size is part of the ABI. It borrows the container's bytes.
 */
typedef struct ciot_json_iter {
    const char *cur_;   /**< reserved */
    const char *end_;   /**< reserved */
    unsigned flags_;    /**< reserved */
    unsigned count_;    /**< reserved */
    void *reserved_[2]; /**< reserved */
} ciot_json_iter;

/**
 * Starts iterating over @p container (an object or an array), e.g. the
 * root found with an empty path. Items are validated as they are reached,
 * nesting counted from @p container.
 *
 * @retval 0           ready
 * @retval CIOT_ETYPE  @p container is not an object or an array
 * @retval CIOT_EINVAL a NULL argument, or a view whose text does not start
 *                     and end like its type
 */
CIOT_API CIOT_NODISCARD int ciot_json_iter_init(ciot_json_iter *it, const ciot_json_value *container);

/**
 * Moves to the next member or element, in document order (duplicate keys
 * included), validating what it scans.
 *
 * @param it        an iterator set up by ciot_json_iter_init()
 * @param out_key   for an object: receives the member's name as a
 *                  CIOT_JSON_STRING view (use ciot_json_get_string() or
 *                  ciot_json_string_equal() on it); for an array: its type
 *                  is set to 0. May be NULL.
 * @param out_value receives the member's or element's value. May be NULL.
 *
 * @retval 0              one more item; outputs set
 * @retval CIOT_ENOTFOUND there is no further item (the end); this is how
 *                        iteration ends, not a failure, and it repeats
 * @retval CIOT_EINVAL    the container's text is malformed (the iterator
 *                        then stays in error), or @p it is NULL
 * @retval CIOT_EDEPTH    an item nests deeper than #CIOT_JSON_READER_MAX_DEPTH
 */
CIOT_API CIOT_NODISCARD int ciot_json_iter_next(ciot_json_iter *it, ciot_json_value *out_key,
                                                ciot_json_value *out_value);

/** @} */

/* ---- end reader ---- */

CIOT_END_DECLS

#endif /* CLOUDIOT_JSON_H */
