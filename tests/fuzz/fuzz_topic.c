/*
 * libFuzzer target: topic name/filter checking, matching and topic sets.
 *
 * Input: byte 0 = flags (low 3 bits), byte 1 = split point; the rest is cut
 * into a filter and a name there. Cross-checks:
 *  - ciot_topic_match is EINVAL exactly when one of the two checks fails;
 *  - a set holding the filter (plus a few fixed filters) reports it exactly
 *    when ciot_topic_match says it matches;
 *  - the AWS flag only ever turns a match into a non-match.
 */
#include <cloudiot/cloudiot.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const fixed[] = {"#", "+", "+/+", "a/#", "$SYS/#", "$share/g/a/+", "a/b"};
#define NFIXED (sizeof fixed / sizeof fixed[0])

typedef struct seen {
    unsigned hits[NFIXED + 1];
} seen;

static int on_match(void *value, void *ud)
{
    seen *s = ud;
    s->hits[(uintptr_t)value]++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    unsigned flags = data[0] & 7u;
    size_t rest = size - 2;
    size_t cut = rest ? data[1] % (rest + 1) : 0;
    /* copies without a terminator, so any overread is caught by ASan */
    char *filter = malloc(cut ? cut : 1);
    char *name = malloc(rest - cut ? rest - cut : 1);
    if (!filter || !name)
        abort();
    memcpy(filter, data + 2, cut);
    memcpy(name, data + 2 + cut, rest - cut);
    size_t flen = cut, nlen = rest - cut;

    int fc = ciot_topic_filter_check_ex(filter, flen, flags);
    int nc = ciot_topic_name_check_ex(name, nlen, flags);
    if ((fc != 0 && fc != CIOT_EINVAL) || (nc != 0 && nc != CIOT_EINVAL))
        abort();
    bool m = false;
    int rc = ciot_topic_match_ex(filter, flen, name, nlen, flags, &m);
    if ((rc == 0) != (fc == 0 && nc == 0))
        abort();
    if (rc == 0 && !(flags & CIOT_MATCH_AWS)) {
        bool ma = false;
        if (ciot_topic_match_ex(filter, flen, name, nlen, flags | CIOT_MATCH_AWS, &ma) != 0)
            abort();
        if (ma && !m)
            abort();
    }

    ciot_topicset *set;
    if (ciot_topicset_new_ex(&set, flags) != 0)
        abort();
    for (size_t i = 0; i < NFIXED; i++) {
        int r = ciot_topicset_add(set, fixed[i], strlen(fixed[i]), (void *)(uintptr_t)i);
        if (r != 0 && r != CIOT_EINVAL)
            abort();
    }
    int ar = ciot_topicset_add(set, filter, flen, (void *)(uintptr_t)NFIXED);
    if ((ar == 0) != (fc == 0) && ar != CIOT_EEXIST)
        abort();
    seen s;
    memset(&s, 0, sizeof s);
    int mr = ciot_topicset_match(set, name, nlen, on_match, &s);
    if ((mr == 0) != (nc == 0))
        abort();
    if (mr == 0) {
        for (size_t i = 0; i <= NFIXED; i++) {
            const char *f = i < NFIXED ? fixed[i] : filter;
            size_t fl = i < NFIXED ? strlen(fixed[i]) : flen;
            bool mi = false;
            if (ciot_topic_match_ex(f, fl, name, nlen, flags, &mi) != 0) {
                if (s.hits[i])
                    abort();
                continue;
            }
            if (i == NFIXED && ar != 0)
                continue;
            if (s.hits[i] != (mi ? 1u : 0u))
                abort();
        }
    }
    if (ar == 0 && ciot_topicset_remove(set, filter, flen, (void *)(uintptr_t)NFIXED) != 0)
        abort();
    ciot_topicset_free(set);
    free(filter);
    free(name);
    return 0;
}
