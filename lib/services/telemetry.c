/* Telemetry readings: the guide's JSON, to the backend's topic template. */
#include "client/service.h"
#include "backend/azure_backend.h"
#include "core/azure.h"

#include <cloudiot/json.h>
#include <cloudiot/telemetry.h>
#include <cloudiot/topic.h>

#include <math.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

void ciot_telemetry_opts_init(ciot_telemetry_opts *opts)
{
    if (opts) {
        static const ciot_telemetry_opts dflt = CIOT_TELEMETRY_OPTS_INIT;
        *opts = dflt;
    }
}

/* One topic level: not empty, no '/', '+', '#', U+0000, valid UTF-8 (checked as a topic). */
static bool level_ok(const char *s, size_t len)
{
    if (!s || len == 0 || len > 128 || memchr(s, '/', len))
        return false;
    return ciot_topic_name_check(s, len) == 0;
}

/* Fills the template into buf (cap bytes, NUL added when room); returns the length. */
static size_t fill(char *buf, size_t cap, const char *tpl, const char *thing, size_t thing_len,
                   const char *type, size_t type_len)
{
    size_t n = 0;
    for (const char *p = tpl; *p;) {
        const char *v = NULL;
        size_t vl = 0, skip = 1;
        if (*p != '{') {
            /* a run of plain bytes up to the next placeholder */
            const char *e = strchr(p, '{');
            size_t run = e ? (size_t)(e - p) : strlen(p);
            if (n + run < cap)
                memcpy(buf + n, p, run);
            n += run;
            p += run;
            continue;
        }
        if (strncmp(p, "{thing}", 7) == 0) {
            v = thing;
            vl = thing_len;
            skip = 7;
        } else if (strncmp(p, "{sensorType}", 12) == 0) {
            v = type;
            vl = type_len;
            skip = 12;
        } else {
            v = p;
            vl = 1;
        }
        if (n + vl < cap)
            memcpy(buf + n, v, vl);
        n += vl;
        p += skip;
    }
    if (n < cap)
        buf[n] = '\0';
    return n;
}

int ciot_telemetry_topic(char *buf, size_t cap, size_t *out_len, const ciot_client *c,
                         const char *sensor_type, size_t sensor_type_len)
{
    if (!c || (!buf && cap) || !level_ok(sensor_type, sensor_type_len))
        return CIOT_EINVAL;
    size_t tl;
    const char *thing = ciot__client_thing(c, &tl);
    size_t n = fill(buf, cap, ciot__client_telemetry_topic(c), thing, tl, sensor_type,
                    sensor_type_len);
    if (out_len)
        *out_len = n;
    return n < cap ? 0 : CIOT_ENOSPC;
}

/* Copies the caller's options (of any known version) over the defaults:
 * a version 1 struct ends at metadata_len, and nothing past it is read. */
static int check_opts(ciot_client *c, ciot_telemetry_opts *o, const ciot_telemetry_opts *in)
{
    static const ciot_telemetry_opts dflt = CIOT_TELEMETRY_OPTS_INIT;
    *o = dflt;
    if (!in)
        return 0;
    if (in->version < 1 || in->version > CIOT_TELEMETRY_OPTS_VERSION) {
        ciot__client_set_err(c, "telemetry: unknown options version %u", in->version);
        return CIOT_EINVAL;
    }
    memcpy(o, in, in->version == 1 ? offsetof(ciot_telemetry_opts, properties) : sizeof *o);
    if ((o->property_count || o->message_id_len || o->correlation_id_len) &&
        ciot__client_backend(c)->id != CIOT_BACKEND_AZURE) {
        ciot__client_set_err(c, "telemetry: message properties and ids need the Azure backend");
        return CIOT_EINVAL;
    }
    if ((o->property_count && !o->properties) || (o->message_id_len && !o->message_id) ||
        (o->correlation_id_len && !o->correlation_id)) {
        ciot__client_set_err(c, "telemetry: NULL properties or ids with a non-zero length");
        return CIOT_EINVAL;
    }
    if (o->qos != 0 && o->qos != 1) {
        ciot__client_set_err(c, "telemetry: QoS %d is not supported (0 or 1)", o->qos);
        return CIOT_EINVAL;
    }
    return 0;
}

/* Azure: devices/{id}[/modules/{mod}]/messages/events/{bag}. */
static int send_azure(uint64_t *out_id, ciot_client *c, const char *payload, size_t len,
                      const ciot_telemetry_opts *o)
{
    ciot_view dev, mod;
    ciot__azure_identity(ciot__client_backend_state(c), &dev, &mod);
    ciot__azure_sysprops sys = {
        .content_type = {"application/json", 16},
        .content_encoding = {"utf-8", 5},
        .message_id = {o->message_id, o->message_id_len},
        .correlation_id = {o->correlation_id, o->correlation_id_len},
    };
    ciot__azure_prop local_props[16], *props = local_props;
    if (o->property_count > 16 &&
        (o->property_count > SIZE_MAX / sizeof *props ||
         !(props = ciot__malloc(o->property_count * sizeof *props))))
        return CIOT_ENOMEM;
    for (size_t i = 0; i < o->property_count; i++) {
        const ciot_property *p = &o->properties[i];
        props[i] = (ciot__azure_prop){{p->name, p->name_len}, {p->value, p->value_len}, true};
        if ((!p->name && p->name_len) || (!p->value && p->value_len)) {
            props[i].name.len = 0; /* refused below as an empty name */
        }
    }
    char local[512], *topic = local;
    size_t n = 0;
    const char *mp = mod.len ? mod.ptr : NULL;
    int rc = ciot__azure_telemetry_topic(local, sizeof local, &n, dev.ptr, dev.len, mp, mod.len,
                                         &sys, props, o->property_count);
    if (rc == CIOT_ENOSPC) {
        if (!(topic = ciot__malloc(n + 1)))
            rc = CIOT_ENOMEM;
        else
            rc = ciot__azure_telemetry_topic(topic, n + 1, &n, dev.ptr, dev.len, mp, mod.len, &sys,
                                             props, o->property_count);
    }
    if (rc == 0)
        rc = ciot_client_publish(out_id, c, topic, n, payload, len, o->qos, 0);
    else if (rc == CIOT_EINVAL)
        ciot__client_set_err(c, "telemetry: a property name or value, or a message or correlation "
                                "id, is not acceptable (names: not empty, not \"$.\"; UTF-8 "
                                "without NUL; $.mid: 1..128 printable ASCII)");
    else if (rc == CIOT_ERANGE)
        ciot__client_set_err(c, "telemetry: the properties make the topic longer than 65535 bytes");
    if (topic != local)
        ciot__free(topic);
    if (props != local_props)
        ciot__free(props);
    return rc;
}

/* Publishes to the sensor type's topic. */
static int send_to(uint64_t *out_id, ciot_client *c, const char *type, size_t type_len,
                   const char *payload, size_t len, const ciot_telemetry_opts *o)
{
    if (ciot__client_backend(c)->id == CIOT_BACKEND_AZURE)
        return send_azure(out_id, c, payload, len, o);
    int qos = o->qos;
    char local[256];
    size_t n = 0;
    (void)!ciot_telemetry_topic(local, sizeof local, &n, c, type, type_len);
    char *topic = local;
    if (n >= sizeof local) {
        if (!(topic = ciot__malloc(n + 1)))
            return CIOT_ENOMEM;
        (void)!ciot_telemetry_topic(topic, n + 1, &n, c, type, type_len);
    }
    int rc = ciot_client_publish(out_id, c, topic, n, payload, len, qos, 0);
    if (topic != local)
        ciot__free(topic);
    return rc;
}

static int write_reading(ciot_json_writer *w, char *buf, size_t cap, const char *thing,
                         size_t thing_len, const char *type, size_t type_len, double value,
                         int64_t ts, const ciot_telemetry_opts *o, size_t *len)
{
    (void)!ciot_json_writer_init(w, buf, cap);
    (void)!ciot_json_begin_object(w);
    (void)!ciot_json_key(w, "deviceId", 8);
    (void)!ciot_json_string(w, thing, thing_len);
    (void)!ciot_json_key(w, "sensorType", 10);
    (void)!ciot_json_string(w, type, type_len);
    (void)!ciot_json_key(w, "value", 5);
    (void)!ciot_json_double(w, value);
    (void)!ciot_json_key(w, "timestamp", 9);
    (void)!ciot_json_timestamp(w, ts);
    (void)!ciot_json_key(w, "metadata", 8);
    if (o->metadata)
        (void)!ciot_json_raw(w, o->metadata, o->metadata_len);
    else {
        (void)!ciot_json_begin_object(w);
        (void)!ciot_json_end_object(w);
    }
    (void)!ciot_json_end_object(w);
    return ciot_json_writer_finish(w, len); /* errors are sticky: the first one comes out here */
}

int ciot_telemetry_send(uint64_t *out_id, ciot_client *c, const char *sensor_type,
                        size_t sensor_type_len, double value, const ciot_telemetry_opts *opts)
{
    if (!c)
        return CIOT_EINVAL;
    ciot_telemetry_opts ob, *o = &ob;
    int rc = check_opts(c, &ob, opts);
    if (rc != 0)
        return rc;
    if (!level_ok(sensor_type, sensor_type_len)) {
        ciot__client_set_err(c, "telemetry: the sensor type must be one topic level of 1..128 "
                                "bytes of UTF-8 without '/', '+', '#'");
        return CIOT_EINVAL;
    }
    if (!isfinite(value)) {
        ciot__client_set_err(c, "telemetry: the value must be a finite number");
        return CIOT_EINVAL;
    }
    if (o->metadata || o->metadata_len) {
        /* An object: its first byte is '{'; ciot_json_raw() below checks
         * that the whole text is exactly one valid value (one scan, not two). */
        size_t i = 0;
        while (o->metadata && i < o->metadata_len &&
               (o->metadata[i] == ' ' || o->metadata[i] == '\t' || o->metadata[i] == '\n' ||
                o->metadata[i] == '\r'))
            i++;
        if (!o->metadata || i == o->metadata_len || o->metadata[i] != '{') {
            ciot__client_set_err(c, "telemetry: the metadata must be one JSON object");
            return CIOT_EINVAL;
        }
    }
    int64_t ts = o->timestamp_ms;
    if (ts == CIOT_TELEMETRY_NOW) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        ts = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    }
    size_t tl;
    const char *thing = ciot__client_thing(c, &tl);
    char local[512];
    ciot_json_writer w;
    size_t len = 0;
    rc = write_reading(&w, local, sizeof local, thing, tl, sensor_type, sensor_type_len, value, ts,
                       o, &len);
    char *buf = local;
    if (rc == CIOT_ENOSPC) {
        if (!(buf = ciot__malloc(len + 1)))
            return CIOT_ENOMEM;
        rc = write_reading(&w, buf, len + 1, thing, tl, sensor_type, sensor_type_len, value, ts, o,
                           &len);
    }
    if (rc != 0) {
        ciot__client_set_err(c, "telemetry: %s",
                             rc == CIOT_ERANGE    ? "the timestamp is outside the years 0000..9999"
                             : rc == CIOT_EDEPTH  ? "the metadata nests too deep"
                             : rc == CIOT_EINVAL ? "the metadata must be one JSON object"
                                                  : ciot_strerror(rc));
        rc = rc == CIOT_ENOMEM ? rc : CIOT_EINVAL;
    } else {
        rc = send_to(out_id, c, sensor_type, sensor_type_len, buf, len, o);
    }
    if (buf != local)
        ciot__free(buf);
    return rc;
}

int ciot_telemetry_send_json(uint64_t *out_id, ciot_client *c, const char *sensor_type,
                             size_t sensor_type_len, const char *json, size_t json_len,
                             const ciot_telemetry_opts *opts)
{
    if (!c)
        return CIOT_EINVAL;
    ciot_telemetry_opts ob, *o = &ob;
    int rc = check_opts(c, &ob, opts);
    if (rc != 0)
        return rc;
    if (!level_ok(sensor_type, sensor_type_len)) {
        ciot__client_set_err(c, "telemetry: the sensor type must be one topic level of 1..128 "
                                "bytes of UTF-8 without '/', '+', '#'");
        return CIOT_EINVAL;
    }
    if (!json || ciot_json_validate(json, json_len) != 0) {
        ciot__client_set_err(c, "telemetry: the payload is not one valid JSON value");
        return CIOT_EINVAL;
    }
    return send_to(out_id, c, sensor_type, sensor_type_len, json, json_len, o);
}
