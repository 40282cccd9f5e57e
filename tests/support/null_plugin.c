/*
 * A mosquitto plugin (API v5) that accepts its options and registers no
 * callback: the broker then behaves as without a plugin. Used only by the
 * launcher's tests to check `cloudiot-emulator run` itself (configuration,
 * readiness, signals, TLS) independently of the emulator plugin.
 */
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
    (void)supported_version_count;
    (void)supported_versions;
    return 5;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **user_data,
                          struct mosquitto_opt *opts, int opt_count)
{
    (void)identifier;
    (void)user_data;
    for (int i = 0; i < opt_count; i++)
        mosquitto_log_printf(MOSQ_LOG_INFO, "null plugin: option %s = %s", opts[i].key,
                             opts[i].value);
    return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_cleanup(void *user_data, struct mosquitto_opt *opts, int opt_count)
{
    (void)user_data;
    (void)opts;
    (void)opt_count;
    return MOSQ_ERR_SUCCESS;
}
