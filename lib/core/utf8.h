/* UTF-8 well-formedness (RFC 3629): no overlong forms, no surrogates
 * (U+D800..U+DFFF), nothing above U+10FFFF. */
#ifndef CIOT_CORE_UTF8_H
#define CIOT_CORE_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* true when s[0..len) is well-formed UTF-8; U+0000 is allowed only when
 * allow_nul is true. */
bool ciot__utf8_valid(const char *s, size_t len, bool allow_nul);

/* Length (2, 3 or 4) of the well-formed UTF-8 sequence of a non-ASCII code
 * point that starts at p (p[0] >= 0x80), reading at most avail bytes; 0 if
 * the bytes there are not one (stray continuation byte, overlong form,
 * encoded surrogate, above U+10FFFF, truncated). Unicode 15, table 3-7. */
size_t ciot__utf8_seq_len(const unsigned char *p, size_t avail);

#endif
