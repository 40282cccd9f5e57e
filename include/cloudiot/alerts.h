/**
 * @file alerts.h
 * @brief ciot_alerts: threshold alerts on device metrics and silence
 *        (offline) detection, as the guide's cloud function does them, on a
 *        gateway or anywhere readings pass.
 *
 * Pure logic: no threads, no I/O, no clock. The caller passes the time
 * (`now_ms`, milliseconds, e.g. Unix time or a monotonic clock: only
 * differences and the alert timestamps depend on it) with every call, and
 * gets the alerts through one callback. Memory is allocated only when a
 * device or a metric is first seen or configured; feeding a known device
 * allocates nothing.
 *
 * ## Thresholds
 * A threshold is a (min, max) pair for a metric (a top-level member of the
 * telemetry, e.g. `temperature`), with a severity and a hysteresis. It is
 * set either for one device or as the default for every device that has no
 * threshold of its own for that metric. The alert types are `HIGH_` or
 * `LOW_` followed by the metric's name in upper case: `temperature` gives
 * `HIGH_TEMPERATURE` and `LOW_TEMPERATURE`, `humidity` `HIGH_HUMIDITY`.
 *
 * - **Edge mode** (hysteresis >= 0): a value above max raises `HIGH_…` once
 *   (kind CIOT_ALERT_RAISED); the alert stays raised, with no further alert,
 *   until a value <= max − hysteresis, which gives one CIOT_ALERT_CLEARED
 *   event of the same type. The same for min: below min raises `LOW_…`, a
 *   value >= min + hysteresis clears it. With hysteresis 0 the alert is
 *   raised when the value goes above max and cleared as soon as it is back
 *   at or below max.
 * - **Repeat mode** (hysteresis < 0, e.g. #CIOT_ALERTS_REPEAT): every
 *   reading above max (below min) raises an alert, as the guide's cloud
 *   function does; no state, never a CLEARED event.
 *
 * Changing or removing a threshold resets the raised state of the devices
 * it applies to, without CLEARED events: the next reading is judged against
 * the new bounds alone.
 *
 * ## Silence
 * With a timeout set (ciot_alerts_set_silence(); the guide uses 10 minutes),
 * a device that was seen (fed, or ciot_alerts_seen()) and then not seen for
 * the timeout is reported once as CIOT_ALERT_OFFLINE by ciot_alerts_tick();
 * its next sighting reports CIOT_ALERT_ONLINE (with how long it was
 * silent) before the reading is judged. ciot_alerts_next_deadline() says
 * when the next device falls silent, so a loop can sleep until then.
 * Time never goes back inside a set: a `now_ms` earlier than the latest one
 * passed counts, for silence, as that latest one.
 *
 * ## Bounds
 * At most ciot_alerts_set_max_devices() devices (10,000 by default) and 64
 * metric names (over the set's life) are tracked; beyond, the call that
 * would add one fails with CIOT_EQUEUE_FULL. ciot_alerts_forget() drops a
 * device. Device ids are 1..128 bytes of UTF-8 (no NUL), metric names
 * 1..64 of `a-z A-Z 0-9 _ -`, severities 1..32 bytes of UTF-8 (no NUL).
 *
 * ## Threads and callbacks
 * A set is used by one thread at a time. The callback runs inside the
 * call that produced the alert; from inside it, every call that changes the
 * set (feeding, ticking, configuring, forgetting, freeing) is refused with
 * CIOT_ERECURSIVE. Its return value: 0 to go on; any other value makes the
 * call that ran it stop there and return CIOT_EUSER (the alert that was
 * delivered counts as delivered; what the call had not yet judged is not
 * judged).
 */
#ifndef CLOUDIOT_ALERTS_H
#define CLOUDIOT_ALERTS_H

#include <cloudiot/common.h>

CIOT_BEGIN_DECLS

typedef struct ciot_alerts ciot_alerts;
/** One alert or event: borrowed, valid during the callback only; read it with ciot_alert_*(). */
typedef struct ciot_alert ciot_alert;

/** A hysteresis that selects repeat mode (any negative value does). */
#define CIOT_ALERTS_REPEAT (-1.0)
/** The default number of devices a set tracks (ciot_alerts_set_max_devices()). */
#define CIOT_ALERTS_DEFAULT_MAX_DEVICES 10000
/** How many distinct metric names a set can know. */
#define CIOT_ALERTS_MAX_METRICS 64

/** What an alert says (ciot_alert_kind()). */
typedef enum ciot_alert_event {
    CIOT_ALERT_RAISED = 1,  /**< a value beyond a threshold: type `HIGH_…` or `LOW_…` */
    CIOT_ALERT_CLEARED = 2, /**< edge mode: the value came back; the type is the one it clears */
    CIOT_ALERT_OFFLINE = 3, /**< a device not seen for the silence timeout: `DEVICE_OFFLINE` */
    CIOT_ALERT_ONLINE = 4   /**< an offline device seen again: `DEVICE_ONLINE` */
} ciot_alert_event;

/**
 * The alert callback.
 * @param a         the set
 * @param alert     borrowed, valid during the call only
 * @param user_data as given to ciot_alerts_new()
 * @return 0 to go on; any other value: the calling function stops and returns CIOT_EUSER
 */
typedef int (*ciot_alerts_fn)(ciot_alerts *a, const ciot_alert *alert, void *user_data);

/**
 * Makes an empty set: no thresholds, silence detection off.
 * @param[out] out  the new set; free it with ciot_alerts_free()
 * @param fn        the alert callback (required)
 * @param user_data passed to @p fn
 * @retval 0           done
 * @retval CIOT_EINVAL @p out or @p fn is NULL
 * @retval CIOT_ENOMEM out of memory
 */
CIOT_API CIOT_NODISCARD int ciot_alerts_new(ciot_alerts **out, ciot_alerts_fn fn, void *user_data);

/**
 * Frees a set with its devices and thresholds. NULL is accepted.
 * @retval 0               done
 * @retval CIOT_ERECURSIVE called from inside its callback: nothing was freed
 */
CIOT_API int ciot_alerts_free(ciot_alerts *a);

/**
 * Why the last call on @p a failed (NUL-terminated, "" when nothing failed
 * yet); valid until the next call on @p a. A static string for NULL.
 */
CIOT_API const char *ciot_alerts_errmsg(const ciot_alerts *a);

/**
 * Sets (or replaces) a threshold; see "Thresholds" above.
 * @param a          the set
 * @param device     the device it is for; NULL with @p device_len 0: the default for every
 *                   device without a threshold of its own for @p metric. Copied.
 * @param device_len its length
 * @param metric     the metric's name (1..64 of a-z A-Z 0-9 _ -), e.g. "temperature"; copied
 * @param metric_len its length
 * @param min        below it a `LOW_` alert is raised; NAN: no lower bound
 * @param max        above it a `HIGH_` alert is raised; NAN: no upper bound (both NAN: a
 *                   device's threshold that disables the default for it)
 * @param severity   copied into each alert (1..32 bytes of UTF-8, e.g. "WARNING",
 *                   "CRITICAL"); NULL with @p severity_len 0 gives "WARNING"
 * @param severity_len its length
 * @param hysteresis >= 0: edge mode with that re-arm band; < 0 (#CIOT_ALERTS_REPEAT):
 *                   repeat mode, an alert for every reading beyond a bound
 * @retval 0                done; the raised state of the devices it applies to is reset
 * @retval CIOT_EINVAL      NULL set, a bad device id, metric name or severity, an infinite
 *                          bound, min > max, a NaN or infinite hysteresis (errmsg says which)
 * @retval CIOT_EQUEUE_FULL a new device beyond the device limit, or a 65th metric name
 * @retval CIOT_ERECURSIVE  called from inside the callback
 * @retval CIOT_ENOMEM      out of memory (nothing changed)
 */
CIOT_API CIOT_NODISCARD int ciot_alerts_set_threshold(ciot_alerts *a, const char *device,
                                                      size_t device_len, const char *metric,
                                                      size_t metric_len, double min, double max,
                                                      const char *severity, size_t severity_len,
                                                      double hysteresis);

/**
 * Removes a threshold set with ciot_alerts_set_threshold() (a device's own, or
 * the default with NULL, 0). A device whose own threshold goes falls back to
 * the default; its raised state for the metric is reset.
 * @retval 0               done
 * @retval CIOT_ENOTFOUND  there is no such threshold
 * @retval CIOT_EINVAL     NULL set, a bad device id or metric name
 * @retval CIOT_ERECURSIVE called from inside the callback
 */
CIOT_API CIOT_NODISCARD int ciot_alerts_clear_threshold(ciot_alerts *a, const char *device,
                                                        size_t device_len, const char *metric,
                                                        size_t metric_len);

/**
 * Sets the silence timeout: a device seen and then not seen for @p timeout_ms
 * is reported offline by ciot_alerts_tick(). 0 turns silence detection off
 * (devices already reported offline stay so until seen again).
 * @retval 0               done
 * @retval CIOT_EINVAL     NULL set or a negative timeout
 * @retval CIOT_ERECURSIVE called from inside the callback
 */
CIOT_API CIOT_NODISCARD int ciot_alerts_set_silence(ciot_alerts *a, int64_t timeout_ms);

/**
 * Sets how many devices the set tracks (default #CIOT_ALERTS_DEFAULT_MAX_DEVICES).
 * Lowering it below the current count drops nobody: new devices are then
 * refused until ciot_alerts_forget() brings the count under it.
 * @retval 0               done
 * @retval CIOT_EINVAL     NULL set or 0
 * @retval CIOT_ERECURSIVE called from inside the callback
 */
CIOT_API CIOT_NODISCARD int ciot_alerts_set_max_devices(ciot_alerts *a, size_t max_devices);

/**
 * Judges one reading: marks the device seen (an ONLINE alert first when it
 * was reported offline), then, when a threshold applies to (@p device,
 * @p metric), raises or clears alerts. A metric without a threshold for the
 * device is not an error (the device is still marked seen).
 * @param a          the set
 * @param device     the device id (copied when the device is new)
 * @param device_len its length
 * @param metric     the metric's name
 * @param metric_len its length
 * @param value      the reading (finite)
 * @param now_ms     the time of the reading
 * @retval 0                done
 * @retval CIOT_EINVAL      NULL set, a bad device id or metric name, a NaN or infinite value
 *                          (nothing changed)
 * @retval CIOT_EQUEUE_FULL a new device beyond the device limit (nothing changed)
 * @retval CIOT_EUSER       the callback returned non-zero
 * @retval CIOT_ERECURSIVE  called from inside the callback
 * @retval CIOT_ENOMEM      out of memory when the device is new (nothing changed)
 */
CIOT_API CIOT_NODISCARD int ciot_alerts_feed(ciot_alerts *a, const char *device,
                                             size_t device_len, const char *metric,
                                             size_t metric_len, double value, int64_t now_ms);

/**
 * Judges a telemetry message: marks the device seen, then judges each
 * metric that has a threshold for the device and is a top-level member of
 * @p json (the last one when a name repeats), in the order of the metrics'
 * first configuration. A member's value is taken when it is a number or a
 * numeric string (`"36.5"`, AWS IoT SQL's conversion:
 * `-?digits(.digits)?([eE]-?digits)?`); any other value (text, bool, null,
 * object, array, or a number too large for a double) is skipped and counted
 * (ciot_alerts_skipped()). A missing member is simply not judged.
 * The message is validated as a whole (the reader's strict RFC 8259).
 * @param a          the set
 * @param device     the device id
 * @param device_len its length
 * @param json       the message (need not be NUL-terminated)
 * @param json_len   its length
 * @param now_ms     the time of the message
 * @retval 0                done
 * @retval CIOT_EINVAL      NULL argument, a bad device id, or @p json is not one JSON
 *                          object (errmsg says why; nothing changed)
 * @retval CIOT_EDEPTH      @p json nests too deep (nothing changed)
 * @retval CIOT_EQUEUE_FULL, CIOT_EUSER, CIOT_ERECURSIVE, CIOT_ENOMEM as ciot_alerts_feed()
 */
CIOT_API CIOT_NODISCARD int ciot_alerts_feed_json(ciot_alerts *a, const char *device,
                                                  size_t device_len, const char *json,
                                                  size_t json_len, int64_t now_ms);

/**
 * Marks a device seen without a reading (a heartbeat, a presence event): an
 * ONLINE alert when it was reported offline.
 * @retval 0 done  @retval CIOT_EINVAL NULL set or a bad device id
 * @retval CIOT_EQUEUE_FULL, CIOT_EUSER, CIOT_ERECURSIVE, CIOT_ENOMEM as ciot_alerts_feed()
 */
CIOT_API CIOT_NODISCARD int ciot_alerts_seen(ciot_alerts *a, const char *device,
                                             size_t device_len, int64_t now_ms);

/**
 * Reports, oldest silence first, every device not seen for the silence
 * timeout up to @p now_ms (last seen <= now − timeout) as CIOT_ALERT_OFFLINE,
 * once. Does nothing when silence detection is off.
 * @retval 0               done
 * @retval CIOT_EINVAL     NULL set
 * @retval CIOT_EUSER      the callback returned non-zero (the devices not yet reported
 *                         are reported by the next tick)
 * @retval CIOT_ERECURSIVE called from inside the callback
 */
CIOT_API CIOT_NODISCARD int ciot_alerts_tick(ciot_alerts *a, int64_t now_ms);

/**
 * When ciot_alerts_tick() has something to report next: the last sighting
 * of the device silent longest plus the timeout (it may already be past).
 * INT64_MAX when silence detection is off or no device is online, or for NULL.
 */
CIOT_API int64_t ciot_alerts_next_deadline(const ciot_alerts *a);

/**
 * Drops a device: its state, its own thresholds and its silence tracking.
 * Nothing is reported for it. Feeding it again starts afresh.
 * @retval 0               done
 * @retval CIOT_ENOTFOUND  not a device of the set
 * @retval CIOT_EINVAL     NULL set or a bad device id
 * @retval CIOT_ERECURSIVE called from inside the callback
 */
CIOT_API CIOT_NODISCARD int ciot_alerts_forget(ciot_alerts *a, const char *device,
                                               size_t device_len);

/** How many devices the set tracks (0 for NULL). */
CIOT_API size_t ciot_alerts_device_count(const ciot_alerts *a);

/** How many metric values ciot_alerts_feed_json() skipped as not numeric (0 for NULL). */
CIOT_API uint64_t ciot_alerts_skipped(const ciot_alerts *a);

/* ---- the alert ---- */

/** What the alert says: a ciot_alert_event (0 for NULL). */
CIOT_API int ciot_alert_kind(const ciot_alert *alert);

/** The device id (NUL-terminated); *len (may be NULL) gets its length. */
CIOT_API const char *ciot_alert_device(const ciot_alert *alert, size_t *len);

/** The metric's name (NUL-terminated; "" for OFFLINE and ONLINE); *len may be NULL. */
CIOT_API const char *ciot_alert_metric(const ciot_alert *alert, size_t *len);

/**
 * The alert type (NUL-terminated): `HIGH_TEMPERATURE`, `LOW_HUMIDITY`, …
 * (RAISED, and CLEARED for the type it clears), `DEVICE_OFFLINE`, `DEVICE_ONLINE`.
 */
CIOT_API const char *ciot_alert_type(const ciot_alert *alert, size_t *len);

/** The reading (RAISED, CLEARED); NAN for OFFLINE and ONLINE. */
CIOT_API double ciot_alert_value(const ciot_alert *alert);

/** The bound crossed (RAISED) or the one the alert was raised on (CLEARED); NAN otherwise. */
CIOT_API double ciot_alert_threshold(const ciot_alert *alert);

/** The threshold's severity (NUL-terminated; "" for OFFLINE and ONLINE); *len may be NULL. */
CIOT_API const char *ciot_alert_severity(const ciot_alert *alert, size_t *len);

/** The `now_ms` of the call that produced the alert. */
CIOT_API int64_t ciot_alert_timestamp(const ciot_alert *alert);

/** OFFLINE and ONLINE: the device's last sighting before its silence; 0 otherwise. */
CIOT_API int64_t ciot_alert_last_seen(const ciot_alert *alert);

/** OFFLINE and ONLINE: how long the device had been silent (timestamp − last seen); 0 otherwise. */
CIOT_API int64_t ciot_alert_silent_ms(const ciot_alert *alert);

/**
 * Writes the alert as a JSON document (doc/alerts.md), e.g.
 * `{"deviceId":"d1","alertType":"HIGH_TEMPERATURE","metric":"temperature","value":37.5,
 * "threshold":35,"severity":"WARNING","timestamp":"2026-11-26T04:56:27.123Z"}`;
 * a CLEARED event adds `"cleared":true`; OFFLINE and ONLINE are
 * `{"deviceId":…,"alertType":"DEVICE_OFFLINE","timestamp":…,"lastSeen":…,"silentMs":…}`.
 * Times are written as ISO 8601 UTC (the `now_ms` taken as Unix milliseconds);
 * whole numbers of magnitude below 2^53 without a fraction. A NUL follows when there is room.
 * @param[out] buf     destination; may be NULL when @p cap is 0 (to measure)
 * @param cap          its size
 * @param[out] out_len the document's length without NUL, also on CIOT_ENOSPC; may be NULL
 * @param alert        the alert
 * @retval 0           done
 * @retval CIOT_ENOSPC @p buf is too small; *out_len says how many bytes are needed
 * @retval CIOT_ERANGE a time outside the years 0000..9999
 * @retval CIOT_EINVAL NULL alert, NULL buf with cap > 0
 */
CIOT_API CIOT_NODISCARD int ciot_alert_to_json(char *buf, size_t cap, size_t *out_len,
                                               const ciot_alert *alert);

CIOT_END_DECLS

#endif /* CLOUDIOT_ALERTS_H */
