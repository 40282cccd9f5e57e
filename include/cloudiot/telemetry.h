/**
 * @file telemetry.h
 * @brief Sensor readings sent through a ciot_client, in the layout of the
 *        client's backend (CIOT_OPT_BACKEND, CIOT_OPT_TELEMETRY_TOPIC).
 *
 * A reading becomes one JSON message
 * `{"deviceId":"<thing>","sensorType":"<type>","value":<number>,"timestamp":"2026-11-26T04:56:27.123Z","metadata":{...}}`
 * (written by the library's JSON writer, keys in that order) published to
 * the telemetry topic template with `{thing}` (CIOT_OPT_THING_NAME) and
 * `{sensorType}` filled in: `sensors/{thing}/{sensorType}` on AWS.
 *
 * On Azure IoT Hub (CIOT_BACKEND_AZURE) the topic is the hub's
 * `devices/{device}/messages/events/{bag}` (module:
 * `devices/{device}/modules/{module}/messages/events/{bag}`); the sensor type
 * is only in the body. The bag always starts with
 * `$.ct=application%2Fjson&$.ce=utf-8` (so the hub can route on the body),
 * then `$.mid`, `$.cid` when given, then the application properties of
 * ciot_telemetry_opts, names and values percent-encoded (RFC 3986
 * unreserved bytes kept, `%XX` upper-case, space as `%20`), e.g.
 * `devices/device1/messages/events/$.ct=application%2Fjson&$.ce=utf-8&alert=high%20temp`.
 *
 * Threads: like ciot_client_publish(), safe from any thread.
 */
#ifndef CLOUDIOT_TELEMETRY_H
#define CLOUDIOT_TELEMETRY_H

#include <cloudiot/client.h>
#include <cloudiot/common.h>

CIOT_BEGIN_DECLS

/** ciot_telemetry_opts::timestamp_ms: use the current time (CLOCK_REALTIME). */
#define CIOT_TELEMETRY_NOW INT64_MIN

/** The version of ciot_telemetry_opts this header describes (1: up to metadata_len;
 *  2: message properties and ids, for Azure IoT Hub). */
#define CIOT_TELEMETRY_OPTS_VERSION 2

/**
 * One application property of a message (Azure IoT Hub: a name=value pair of
 * the topic's property bag, percent-encoded by the library). Both are UTF-8
 * without NUL, pointer + length (no NUL needed); the name is not empty and
 * does not start with "$." (reserved for system properties).
 */
typedef struct ciot_property {
    const char *name;  /**< the property's name */
    size_t name_len;   /**< its length in bytes */
    const char *value; /**< its value; may be NULL when value_len is 0 */
    size_t value_len;  /**< its length in bytes */
} ciot_property;

/**
 * Options of one telemetry message. Start from CIOT_TELEMETRY_OPTS_INIT or
 * ciot_telemetry_opts_init(); NULL instead of a pointer means all defaults.
 * New fields are only ever added at the end.
 */
typedef struct ciot_telemetry_opts {
    unsigned version;     /**< CIOT_TELEMETRY_OPTS_VERSION */
    int qos;              /**< 0 or 1 [1] */
    int64_t timestamp_ms; /**< Unix time in ms of the reading [CIOT_TELEMETRY_NOW] */
    const char *metadata; /**< a JSON object, copied into "metadata" [NULL: `{}`] */
    size_t metadata_len;  /**< its length in bytes */
    /* -- version 2 -- */
    const ciot_property *properties; /**< application properties, in this order [none]; Azure IoT
                                          Hub only (other backends refuse them: CIOT_EINVAL) */
    size_t property_count;           /**< number of properties */
    const char *message_id;          /**< Azure `$.mid`: 1..128 bytes of printable ASCII [none] */
    size_t message_id_len;           /**< its length; 0: none */
    const char *correlation_id;      /**< Azure `$.cid`: UTF-8 [none] */
    size_t correlation_id_len;       /**< its length; 0: none */
} ciot_telemetry_opts;

/** The defaults, for static initialisation. */
#define CIOT_TELEMETRY_OPTS_INIT                                                              \
    {CIOT_TELEMETRY_OPTS_VERSION, 1, CIOT_TELEMETRY_NOW, NULL, 0, NULL, 0, NULL, 0, NULL, 0}

/** Sets @p opts to the defaults (for bindings, which cannot use the macro). NULL does nothing. */
CIOT_API void ciot_telemetry_opts_init(ciot_telemetry_opts *opts);

/**
 * Sends one reading as the JSON message described above.
 * @param[out] out_id     the message id (as ciot_client_publish()); may be NULL
 * @param c               the client
 * @param sensor_type     e.g. "temperature": one topic level (no '/', '+', '#'), UTF-8,
 *                        1..128 bytes; pointer + length, copied
 * @param sensor_type_len its length
 * @param value           the reading; finite
 * @param opts            NULL for the defaults
 * @retval 0               queued (see ciot_client_publish())
 * @retval CIOT_EINVAL     bad sensor type, value NaN or infinite, metadata not a JSON object,
 *                         an unknown opts->version, QoS not 0/1, a timestamp outside the
 *                         years 0000..9999, a topic or payload the backend refuses, properties
 *                         or ids on a backend other than Azure, a bad property name or value
 *                         or message id (ciot_client_errmsg() says which)
 * @retval CIOT_ERANGE     the properties make the topic longer than 65535 bytes
 * @retval CIOT_EQUEUE_FULL, CIOT_EIO, CIOT_ENOMEM, CIOT_ESTATE as ciot_client_publish()
 */
CIOT_API CIOT_NODISCARD int ciot_telemetry_send(uint64_t *out_id, ciot_client *c,
                                                const char *sensor_type, size_t sensor_type_len,
                                                double value, const ciot_telemetry_opts *opts);

/**
 * Sends a payload of the caller's to the telemetry topic of @p sensor_type,
 * unchanged. It must be one valid JSON value (checked); opts->timestamp_ms
 * and opts->metadata are not used.
 * @retval 0 queued
 * @retval CIOT_EINVAL the payload is not valid JSON, or as ciot_telemetry_send()
 * @retval CIOT_ERANGE as ciot_telemetry_send()
 * @retval CIOT_EQUEUE_FULL, CIOT_EIO, CIOT_ENOMEM, CIOT_ESTATE as ciot_client_publish()
 */
CIOT_API CIOT_NODISCARD int ciot_telemetry_send_json(uint64_t *out_id, ciot_client *c,
                                                     const char *sensor_type,
                                                     size_t sensor_type_len, const char *json,
                                                     size_t json_len,
                                                     const ciot_telemetry_opts *opts);

/**
 * The topic a reading of @p sensor_type goes to, written into @p buf (a NUL
 * follows when there is room). On Azure: the topic without property bag.
 * @param[out] buf     where the topic goes; may be NULL when @p cap is 0
 * @param cap          its size
 * @param[out] out_len the topic's length without NUL (also on CIOT_ENOSPC); may be NULL
 * @retval 0 done  @retval CIOT_ENOSPC @p buf too small  @retval CIOT_EINVAL bad arguments
 */
CIOT_API CIOT_NODISCARD int ciot_telemetry_topic(char *buf, size_t cap, size_t *out_len,
                                                 const ciot_client *c, const char *sensor_type,
                                                 size_t sensor_type_len);

CIOT_END_DECLS

#endif /* CLOUDIOT_TELEMETRY_H */
