/*
 * libFuzzer target: ciot_alerts (<cloudiot/alerts.h>) fed with arbitrary
 * messages.
 *
 * Input: chunks separated by 0xFF bytes; in each chunk the first byte picks
 * the device (low 3 bits) and how far the clock moves (the rest), the other
 * bytes are a telemetry message. Every chunk is fed with
 * ciot_alerts_feed_json(), then the set ticks. Checks:
 *  - the result agrees with the reader: 0 exactly when the message is one
 *    valid JSON text whose first byte (after white space) is `{`; otherwise
 *    CIOT_EINVAL or CIOT_EDEPTH, and no alert;
 *  - every alert is consistent: a RAISED value lies beyond its bound (above
 *    max for HIGH_, below min for LOW_), is finite, and its JSON document is
 *    valid and measures the same with no buffer;
 *  - a device goes OFFLINE only when ONLINE (or first seen) before, and back.
 */
#include <cloudiot/cloudiot.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int offline[8];

static void check(int cond)
{
    if (!cond)
        abort();
}

static int on_alert(ciot_alerts *a, const ciot_alert *al, void *ud)
{
    (void)a;
    int *count = ud;
    (*count)++;
    size_t dlen = 0;
    const char *dev = ciot_alert_device(al, &dlen);
    check(dlen == 4 && memcmp(dev, "dev", 3) == 0);
    int k = dev[3] - '0';
    check(k >= 0 && k < 8);
    const char *type = ciot_alert_type(al, NULL);
    int kind = ciot_alert_kind(al);
    if (kind == CIOT_ALERT_RAISED) {
        double v = ciot_alert_value(al), t = ciot_alert_threshold(al);
        check(isfinite(v) && isfinite(t));
        if (strncmp(type, "HIGH_", 5) == 0)
            check(v > t);
        else
            check(strncmp(type, "LOW_", 4) == 0 && v < t);
    } else if (kind == CIOT_ALERT_CLEARED) {
        check(isfinite(ciot_alert_value(al)));
    } else if (kind == CIOT_ALERT_OFFLINE) {
        check(!offline[k]);
        offline[k] = 1;
    } else {
        check(kind == CIOT_ALERT_ONLINE && offline[k]);
        offline[k] = 0;
    }
    char buf[1024];
    size_t len = 0, need = 0;
    int rc = ciot_alert_to_json(buf, sizeof buf, &len, al);
    if (rc == 0) {
        check(ciot_json_validate(buf, len) == 0);
        check(ciot_alert_to_json(NULL, 0, &need, al) == CIOT_ENOSPC && need == len);
    } else {
        check(rc == CIOT_ERANGE);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int count = 0;
    ciot_alerts *a = NULL;
    memset(offline, 0, sizeof offline);
    if (ciot_alerts_new(&a, on_alert, &count) != 0)
        abort();
    check(ciot_alerts_set_threshold(a, NULL, 0, "temperature", 11, NAN, 35, NULL, 0, 0.5) == 0);
    check(ciot_alerts_set_threshold(a, NULL, 0, "humidity", 8, 10, 80, "HIGH", 4,
                                    CIOT_ALERTS_REPEAT) == 0);
    check(ciot_alerts_set_threshold(a, NULL, 0, "pressure", 8, 950, 1050, NULL, 0, 5) == 0);
    check(ciot_alerts_set_threshold(a, "dev1", 4, "temperature", 11, -5, 5, NULL, 0, 1) == 0);
    check(ciot_alerts_set_threshold(a, "dev2", 4, "v", 1, 0, 1, NULL, 0, 0) == 0);
    check(ciot_alerts_set_silence(a, 1000) == 0);
    int64_t now = 1795668987123;
    size_t i = 0;
    while (i < size) {
        const uint8_t *end = memchr(data + i, 0xff, size - i);
        size_t n = end ? (size_t)(end - (data + i)) : size - i;
        if (n > 0) {
            char dev[5] = {'d', 'e', 'v', (char)('0' + (data[i] & 7)), 0};
            now += (int64_t)(data[i] >> 3) * 100;
            const char *msg = (const char *)data + i + 1;
            size_t len = n - 1;
            int before = count;
            int rc = ciot_alerts_feed_json(a, dev, 4, msg, len, now);
            size_t b = 0;
            while (b < len && (msg[b] == ' ' || msg[b] == '\t' || msg[b] == '\n' || msg[b] == '\r'))
                b++;
            int valid = ciot_json_validate(msg, len);
            if (valid == 0 && b < len && msg[b] == '{') {
                check(rc == 0);
            } else {
                check(rc == CIOT_EINVAL || rc == CIOT_EDEPTH);
                check(count == before);
            }
            check(ciot_alerts_tick(a, now) == 0);
            check(ciot_alerts_next_deadline(a) > now);
        }
        i += n + 1;
    }
    check(ciot_alerts_free(a) == 0);
    return 0;
}
