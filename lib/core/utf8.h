/* UTF-8 well-formedness (RFC 3629): no overlong forms, no surrogates
 * (U+D800..U+DFFF), nothing above U+10FFFF. */
#ifndef CIOT_CORE_UTF8_H
#define CIOT_CORE_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* true when s[0..len) is well-formed UTF-8; U+0000 is allowed only when
 * allow_nul is true. */
bool ciot__utf8_valid(const char *s, size_t len, bool allow_nul);

#endif
