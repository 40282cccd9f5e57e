/*
 * Topic filters against each other, as a broker applies them: MQTT's rules
 * ('+' one level, '#' the rest including the parent level, wildcards in the
 * first level never match a topic that starts with '$'), or with @p aws those
 * of AWS IoT Core, where '#' does not match the parent level ('a/#' does not
 * match 'a'; CIOT_MATCH_AWS of <cloudiot/topic.h>). Used by the
 * rule set's client attachment (lib/services/rules_client.c) to subscribe to
 * a set of filters in which no two overlap: a broker may deliver a message
 * that matches several subscriptions of a session once or once per
 * subscription (mosquitto 2.0 does the latter with MQTT 5), so with
 * overlapping subscriptions a client cannot tell a copy from a new message.
 * Pure: no I/O, no globals; ciot__filter_cover() allocates its result.
 * Inputs are valid topic filters (ciot_topic_filter_check()).
 */
#ifndef CIOT_CORE_FILTER_COVER_H
#define CIOT_CORE_FILTER_COVER_H

#include <stdbool.h>
#include <stddef.h>

typedef struct ciot__filter {
    char *s; /* NUL-terminated */
    size_t len;
} ciot__filter;

/* true when every topic that matches @p f matches @p g. Conservative: it may
 * answer false for two filters that match the same topics written
 * differently ("#" and "+/#"), never true wrongly. */
bool ciot__filter_covers(const char *g, size_t gl, const char *f, size_t fl, bool aws);

/* true when some topic matches both @p a and @p b; also (harmlessly) for
 * two that would both match only the empty name, which is no topic ('+'
 * and '/#'). */
bool ciot__filter_overlaps(const char *a, size_t al, const char *b, size_t bl, bool aws);

/* A filter that covers both @p a and @p b (two filters that overlap), level
 * by level: a level both have stays, levels that differ become '+', and from
 * the first '#' it is '#'; where one ends before the other, '#' there (MQTT)
 * or, with @p aws, in place of the last level they share ('a/b' and 'a/b/#'
 * give 'a/b/#', or 'a/#' with @p aws, although these two do not overlap there). Writes at most al + bl + 2 bytes (with
 * the NUL) into @p out and returns the length. */
size_t ciot__filter_join(char *out, const char *a, size_t al, const char *b, size_t bl, bool aws);

/*
 * A set of filters that covers every filter of @p v (each topic that matches
 * one of them matches one of the set) and in which no two overlap: a filter
 * covered by another is left out, and two that overlap otherwise are replaced
 * by their join (which may match topics that none of @p v matches). The
 * result depends only on the set of inputs, not on their order; it is sorted
 * (bytes, then length). Duplicates in @p v are allowed.
 * @param[out] out    a new array of *out_n filters (NULL when n is 0); release with
 *                    ciot__filters_free()
 * @return 0, or CIOT_ENOMEM (nothing allocated)
 */
int ciot__filter_cover(ciot__filter **out, size_t *out_n, const ciot__filter *v, size_t n,
                       bool aws);

void ciot__filters_free(ciot__filter *v, size_t n);

/* The ordering of ciot__filter_cover()'s result: memcmp, then the shorter first. */
int ciot__filter_cmp(const ciot__filter *a, const ciot__filter *b);

#endif
