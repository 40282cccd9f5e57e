/**
 * @file topic.h
 * @brief MQTT topic names, topic filters, matching, and sets of filters.
 *
 * Everything here takes pointer + length (no NUL needed), never allocates
 * except inside a ciot_topicset, and follows MQTT 3.1.1 / 5.0 (§4.7, §4.8.2)
 * as written down in doc/protocols.md §6:
 *
 * - names and filters are 1..65535 bytes of well-formed UTF-8 (no overlongs,
 *   no surrogates, nothing above U+10FFFF) without U+0000;
 * - `/` separates levels; empty levels are levels;
 * - `+` is a whole level and matches one level (which may be empty); `#` is a
 *   whole, last level and matches its level, all below, and the parent level
 *   (`a/#` matches `a`) unless ::CIOT_MATCH_AWS is given;
 * - names may hold neither `+` nor `#`;
 * - filters starting with a wildcard never match names starting with `$`;
 * - `$share/{ShareName}/{filter}` (MQTT 5 shared subscription) is matched
 *   against `{filter}` only; ShareName is at least one character, without
 *   `/`, `+` or `#`; `$share/g`, `$share//a` and `$share/g+/a` are invalid.
 *
 * Comparison is byte-wise (case-sensitive, no normalisation).
 * All functions are thread-safe on distinct data; a ciot_topicset may be
 * matched from several threads at once as long as nobody modifies it.
 */
#ifndef CLOUDIOT_TOPIC_H
#define CLOUDIOT_TOPIC_H

#include <cloudiot/common.h>

CIOT_BEGIN_DECLS

/**
 * @name Flags for the *_ex functions
 * Combine with `|`. Unknown bits are rejected with CIOT_EINVAL.
 * @{
 */
/** AWS IoT Core wildcard rule: `#` does not match its parent level (`a/#` does not match `a`). */
#define CIOT_MATCH_AWS 0x01u
/** Also reject the code points MQTT says SHOULD NOT appear: U+0001–U+001F,
 *  U+007F–U+009F and the Unicode non-characters (U+FDD0–U+FDEF, U+xxFFFE, U+xxFFFF). */
#define CIOT_TOPIC_STRICT 0x02u
/** AWS IoT Core limits: at most 256 bytes and at most 7 `/` per name or filter
 *  (a leading Basic Ingest prefix `$aws/rules/{rule}/` is not counted in the
 *  slashes; for `$share/{name}/{filter}` only `{filter}`'s slashes count). */
#define CIOT_TOPIC_AWS_LIMITS 0x04u
/** Everything AWS IoT Core applies: ::CIOT_MATCH_AWS | ::CIOT_TOPIC_AWS_LIMITS. */
#define CIOT_TOPIC_AWS (CIOT_MATCH_AWS | CIOT_TOPIC_AWS_LIMITS)
/** @} */

/**
 * Tells whether topic name @p topic matches topic filter @p filter (spec rules,
 * flags 0). Same as ciot_topic_match_ex() with flags 0.
 *
 * Both strings are fully validated in the same single pass that matches them;
 * an invalid string is an error even when the match would fail early.
 *
 * @param filter     topic filter, @p filter_len bytes, no NUL needed
 * @param topic      topic name, @p topic_len bytes, no NUL needed
 * @param out_match  set to the answer on success; untouched on error
 * @retval 0            *out_match is set
 * @retval CIOT_EINVAL  the filter or the topic name is invalid, or a pointer is NULL
 */
CIOT_API CIOT_NODISCARD int ciot_topic_match(const char *filter, size_t filter_len,
                                             const char *topic, size_t topic_len,
                                             bool *out_match);

/**
 * ciot_topic_match() with flags (::CIOT_MATCH_AWS, ::CIOT_TOPIC_STRICT,
 * ::CIOT_TOPIC_AWS_LIMITS); the flags apply to both strings.
 *
 * @retval 0            *out_match is set
 * @retval CIOT_EINVAL  invalid filter or name under @p flags, unknown flag, or NULL pointer
 */
CIOT_API CIOT_NODISCARD int ciot_topic_match_ex(const char *filter, size_t filter_len,
                                                const char *topic, size_t topic_len,
                                                unsigned flags, bool *out_match);

/**
 * Checks that @p filter is a valid topic filter (wildcards allowed).
 *
 * @retval 0            valid
 * @retval CIOT_EINVAL  invalid, or @p filter is NULL
 */
CIOT_API CIOT_NODISCARD int ciot_topic_filter_check(const char *filter, size_t len);

/**
 * ciot_topic_filter_check() with flags (::CIOT_TOPIC_STRICT, ::CIOT_TOPIC_AWS_LIMITS;
 * ::CIOT_MATCH_AWS is accepted and has no effect here).
 *
 * @retval 0            valid
 * @retval CIOT_EINVAL  invalid under @p flags, unknown flag, or NULL pointer
 */
CIOT_API CIOT_NODISCARD int ciot_topic_filter_check_ex(const char *filter, size_t len,
                                                       unsigned flags);

/**
 * Checks that @p topic is a valid topic name (no wildcards).
 *
 * @retval 0            valid
 * @retval CIOT_EINVAL  invalid, or @p topic is NULL
 */
CIOT_API CIOT_NODISCARD int ciot_topic_name_check(const char *topic, size_t len);

/**
 * ciot_topic_name_check() with flags (::CIOT_TOPIC_STRICT, ::CIOT_TOPIC_AWS_LIMITS;
 * ::CIOT_MATCH_AWS is accepted and has no effect here).
 *
 * @retval 0            valid
 * @retval CIOT_EINVAL  invalid under @p flags, unknown flag, or NULL pointer
 */
CIOT_API CIOT_NODISCARD int ciot_topic_name_check_ex(const char *topic, size_t len,
                                                     unsigned flags);

/**
 * A set of (topic filter, value) pairs, matched against a topic name at once.
 *
 * A trie over levels: looking a name up costs O(levels of the name) plus
 * O(matches), not O(number of filters). Filters are copied in; values are
 * opaque pointers the set never dereferences or frees.
 */
typedef struct ciot_topicset ciot_topicset;

/**
 * Creates an empty set with flags 0 (spec rules).
 *
 * @param out  receives the new set; free it with ciot_topicset_free()
 * @retval 0             *out is set
 * @retval CIOT_EINVAL   @p out is NULL
 * @retval CIOT_ENOMEM   out of memory
 */
CIOT_API CIOT_NODISCARD int ciot_topicset_new(ciot_topicset **out);

/**
 * Creates an empty set whose filters and lookups follow @p flags
 * (::CIOT_MATCH_AWS, ::CIOT_TOPIC_STRICT, ::CIOT_TOPIC_AWS_LIMITS).
 *
 * @retval 0             *out is set
 * @retval CIOT_EINVAL   @p out is NULL or unknown flag
 * @retval CIOT_ENOMEM   out of memory
 */
CIOT_API CIOT_NODISCARD int ciot_topicset_new_ex(ciot_topicset **out, unsigned flags);

/** Frees @p set and everything it holds (not the values). NULL does nothing. */
CIOT_API void ciot_topicset_free(ciot_topicset *set);

/**
 * Adds the pair (@p filter, @p value). The filter is validated and copied.
 * The same filter may be added with several values; each pair is reported
 * once by ciot_topicset_match(). `$share/g1/a` and `$share/g2/a` are different
 * filters (both match `a`).
 *
 * @param value  any pointer, NULL included; compared by address
 * @retval 0             added
 * @retval CIOT_EINVAL   invalid filter (under the set's flags) or NULL pointer
 * @retval CIOT_EEXIST   this exact (filter, value) pair is already in the set; nothing changed
 * @retval CIOT_ENOMEM   out of memory; the set is unchanged
 * Not thread-safe against other calls on the same set.
 */
CIOT_API CIOT_NODISCARD int ciot_topicset_add(ciot_topicset *set, const char *filter, size_t len,
                                              void *value);

/**
 * Removes the pair (@p filter, @p value).
 *
 * @retval 0               removed
 * @retval CIOT_EINVAL     invalid filter or NULL pointer
 * @retval CIOT_ENOTFOUND  the pair is not in the set
 * Not thread-safe against other calls on the same set.
 */
CIOT_API CIOT_NODISCARD int ciot_topicset_remove(ciot_topicset *set, const char *filter,
                                                 size_t len, void *value);

/**
 * Calls @p on_match once for every (filter, value) pair whose filter matches
 * topic name @p topic, in no specified order. Never allocates.
 *
 * The callback must not add to or remove from @p set.
 *
 * @param on_match   called with the pair's value and @p user_data; returning
 *                   non-zero stops the lookup and that value is returned
 * @retval 0             all matches reported (possibly none)
 * @retval CIOT_EINVAL   invalid topic name (under the set's flags), or NULL @p set / @p on_match
 * @retval other         the non-zero value returned by @p on_match
 */
CIOT_API CIOT_NODISCARD int ciot_topicset_match(const ciot_topicset *set, const char *topic,
                                                size_t len,
                                                int (*on_match)(void *value, void *user_data),
                                                void *user_data);

/** Number of (filter, value) pairs in @p set; 0 for NULL. */
CIOT_API size_t ciot_topicset_count(const ciot_topicset *set);

/**
 * Bytes the set currently holds from the allocator (sum of the sizes it
 * requested, allocator bookkeeping not included); 0 for NULL.
 *
 * Small blocks (trie nodes, child arrays, value lists) are cut from larger
 * chunks the set allocates, so the allocator's per-block overhead is not
 * paid per filter. Memory freed by ciot_topicset_remove() is kept for the
 * set's reuse; the chunks go back to the allocator when the set becomes
 * empty, and with ciot_topicset_free().
 */
CIOT_API size_t ciot_topicset_memory(const ciot_topicset *set);

CIOT_END_DECLS

#endif /* CLOUDIOT_TOPIC_H */
