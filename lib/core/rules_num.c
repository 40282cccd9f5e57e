/*
 * AWS IoT SQL's numeric strings (protocols.md §3): a string that reads as a
 * number converts to a Decimal. One place for the rules engine
 * (rules_eval.c) and the threshold alerts (services/alerts.c).
 */
#include "core/rules_sql.h"

#include <cloudiot/json.h>

#include <string.h>

bool ciot__rules_numeric_string(const char *s, size_t n, double *out)
{
    size_t i = 0;
    if (i < n && s[i] == '-')
        i++;
    size_t d0 = i;
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++;
    if (i == d0)
        return false;
    if (i < n && s[i] == '.') {
        size_t f0 = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == f0)
            return false;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && s[i] == '-')
            i++;
        size_t e0 = i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == e0)
            return false;
    }
    if (i != n || n > CIOT__RULES_MAX_NUMSTR)
        return false;
    /* JSON forbids leading zeros in the integer part: drop them ("007" is 7) */
    char buf[CIOT__RULES_MAX_NUMSTR + 2];
    size_t k = 0, j = 0;
    if (s[j] == '-')
        buf[k++] = s[j++];
    while (j + 1 < n && s[j] == '0' && s[j + 1] >= '0' && s[j + 1] <= '9')
        j++;
    memcpy(buf + k, s + j, n - j);
    k += n - j;
    ciot_json_value v = {CIOT_JSON_NUMBER, buf, k};
    return ciot_json_get_double(&v, out) == 0;
}
