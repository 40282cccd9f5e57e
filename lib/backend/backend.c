/* The table of backends, and the generic MQTT row (today's client as it is). */
#include "backend/backend.h"

const ciot__backend ciot__backend_mqtt = {
    .id = CIOT_BACKEND_MQTT,
    .name = "mqtt",
    /* protocols.md §5 names telemetry devices/{id}/telemetry; one more level
     * keeps the sensor type in the topic, as the AWS layout does. */
    .telemetry_topic = "devices/{thing}/telemetry/{sensorType}",
    .command_filter = "devices/{thing}/commands/+",
    .shadow_prefix = NULL,
    .prepare = NULL,
    .check = NULL,
};

static const ciot__backend *const table[] = {
    [CIOT_BACKEND_MQTT] = &ciot__backend_mqtt,
#ifdef CIOT_HAVE_AWS
    [CIOT_BACKEND_AWS] = &ciot__backend_aws,
#endif
#ifdef CIOT_HAVE_AZURE
    [CIOT_BACKEND_AZURE] = &ciot__backend_azure,
#endif
};

const ciot__backend *ciot__backend_get(int id)
{
    if (id < 0 || (size_t)id >= sizeof table / sizeof table[0])
        return NULL;
    return table[id];
}
