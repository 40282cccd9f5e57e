/*
 * Parsing of Azure IoT Hub direct-method request topics
 * `$iothub/methods/POST/{name}/?$rid={rid}[&...]` (protocols.md §4.4).
 * Pure: no I/O, no globals, no allocation.
 */
#ifndef CIOT_CORE_AZURE_METHOD_H
#define CIOT_CORE_AZURE_METHOD_H

#include <cloudiot/common.h>

#include <stddef.h>

#define CIOT__AZURE_METHOD_PREFIX "$iothub/methods/POST/"
#define CIOT__AZURE_METHOD_NAME_MAX 128
#define CIOT__AZURE_RID_MAX 128
/* Longer request topics are malformed (names and ids are at most 128 bytes). */
#define CIOT__AZURE_METHOD_TOPIC_MAX 1024

typedef struct ciot__azure_method_req {
    ciot_view name; /* raw, from the topic */
    ciot_view rid;  /* percent-decoded, in the caller's buffer; empty when unusable */
} ciot__azure_method_req;

/*
 * Splits a request topic. The query after the name's '/' is decoded like a
 * property bag (a leading '?', fields separated by '&', $rid anywhere);
 * buf (cap bytes; CIOT__AZURE_METHOD_TOPIC_MAX always suffices) receives the
 * decoded fields and out->rid points into it.
 * @retval 0              out->name and out->rid set
 * @retval CIOT_ENOTFOUND not a method request topic (wrong prefix)
 * @retval CIOT_EPROTOCOL malformed; *why says how (a static string). out->rid
 *                        is set when the request id itself was usable (the
 *                        request can then be answered 400), else empty.
 * @retval CIOT_EINVAL    NULL where a pointer is needed
 */
int ciot__azure_method_parse(ciot__azure_method_req *out, const char **why, char *buf, size_t cap,
                             const char *topic, size_t len);

#endif
