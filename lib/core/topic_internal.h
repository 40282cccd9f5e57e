/*
 * Internal helpers shared by lib/core/topic.c and lib/core/topicset.c.
 */
#ifndef CIOT_CORE_TOPIC_INTERNAL_H
#define CIOT_CORE_TOPIC_INTERNAL_H

#include <cloudiot/topic.h>

#define CIOT__TOPIC_FLAGS_ALL (CIOT_MATCH_AWS | CIOT_TOPIC_STRICT | CIOT_TOPIC_AWS_LIMITS)
#define CIOT__TOPIC_MAX 65535u

/* Validates a topic name under flags (length, UTF-8, no wildcards, limits).
 * Returns 0 or CIOT_EINVAL. */
int ciot__topic_name_validate(const unsigned char *t, size_t n, unsigned flags);

/*
 * Validates a topic filter under flags. On success *share_len is the length of
 * the `$share/{name}/` prefix (0 when the filter is not a shared one); the
 * filter proper starts there. Returns 0 or CIOT_EINVAL.
 */
int ciot__topic_filter_validate(const unsigned char *f, size_t n, unsigned flags,
                                size_t *share_len);

#endif /* CIOT_CORE_TOPIC_INTERNAL_H */
