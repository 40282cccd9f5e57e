/**
 * @file json.h
 * @brief JSON without a tree: an on-demand reader over the caller's bytes.
 *
 * Everything here works on pointer + length (no NUL needed), allocates
 * nothing, copies nothing and keeps no state between calls; all functions
 * are thread-safe (they only read the bytes they are given).
 */
#ifndef CLOUDIOT_JSON_H
#define CLOUDIOT_JSON_H

#include <cloudiot/common.h>

CIOT_BEGIN_DECLS

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
 * - containers nest at most #CIOT_JSON_MAX_DEPTH deep (the outermost
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
#define CIOT_JSON_MAX_DEPTH 256

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
 * @retval CIOT_EDEPTH  nested deeper than #CIOT_JSON_MAX_DEPTH
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
 * @retval CIOT_EDEPTH    the document nests deeper than #CIOT_JSON_MAX_DEPTH
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
 * @retval CIOT_EDEPTH    @p obj nests deeper than #CIOT_JSON_MAX_DEPTH
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
 * @retval CIOT_EDEPTH    nesting deeper than #CIOT_JSON_MAX_DEPTH
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
 * @retval CIOT_EDEPTH    an item nests deeper than #CIOT_JSON_MAX_DEPTH
 */
CIOT_API CIOT_NODISCARD int ciot_json_iter_next(ciot_json_iter *it, ciot_json_value *out_key,
                                                ciot_json_value *out_value);

/** @} */

/* ---- end reader ---- */

CIOT_END_DECLS

#endif /* CLOUDIOT_JSON_H */
