/*
 * The Azure backend's settings (lib/backend/azure.c): what it derives from
 * the connection string, what it refuses, and the credentials it signs for
 * each connection attempt. No network: clients are made, never connected.
 */
#include "backend/azure_backend.h"
#include "backend/backend.h"
#include "client/service.h"

#include <cloudiot/cloudiot.h>

#include <criterion/criterion.h>
#include <string.h>
#include <time.h>

#define HUB "myhub.azure-devices.net"
#define KEY "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define CS "HostName=" HUB ";DeviceId=device1;SharedAccessKey=" KEY

static ciot_config *cfg;

static void setup(void)
{
    cr_assert_eq(ciot_config_new(&cfg), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_BACKEND, CIOT_BACKEND_AZURE), 0);
}

static void teardown(void)
{
    ciot_config_free(cfg);
}

TestSuite(azure_backend, .init = setup, .fini = teardown);

static int make(ciot_client **c)
{
    *c = NULL;
    return ciot_client_new(c, cfg);
}

static void refused(int want, const char *msg)
{
    ciot_client *c;
    int rc = make(&c);
    cr_assert_eq(rc, want, "%s: %s", ciot_err_name(rc), ciot_config_errmsg(cfg));
    cr_assert_null(c);
    cr_assert(strstr(ciot_config_errmsg(cfg), msg) != NULL, "\"%s\" lacks \"%s\"",
              ciot_config_errmsg(cfg), msg);
    cr_assert(strstr(ciot_config_errmsg(cfg), KEY) == NULL, "the key leaked");
}

Test(azure_backend, options_have_their_ranges_and_the_connection_string_is_a_secret)
{
    int64_t v;
    cr_assert_eq(ciot_config_get_int(cfg, CIOT_OPT_SAS_TOKEN_LIFETIME_S, &v), 0);
    cr_assert_eq(v, 3600);
    cr_assert_eq(ciot_config_get_int(cfg, CIOT_OPT_SAS_RENEW_PERCENT, &v), 0);
    cr_assert_eq(v, 80);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_SAS_TOKEN_LIFETIME_S, 0), CIOT_ERANGE);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_SAS_TOKEN_LIFETIME_S, 1), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_SAS_TOKEN_LIFETIME_S, 31536001), CIOT_ERANGE);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_SAS_RENEW_PERCENT, 0), CIOT_ERANGE);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_SAS_RENEW_PERCENT, 100), CIOT_ERANGE);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_SAS_RENEW_PERCENT, 99), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_AZURE_CONNECTION_STRING, CS), 0);
    const char *s = "x";
    cr_assert_eq(ciot_config_get_str(cfg, CIOT_OPT_AZURE_CONNECTION_STRING, &s), CIOT_EINVAL);
    cr_assert(strstr(ciot_config_errmsg(cfg), "secret") != NULL);
    int opt, type;
    cr_assert_eq(ciot_config_option_by_name("azure_connection_string", &opt, &type), 0);
    cr_assert_eq(opt, CIOT_OPT_AZURE_CONNECTION_STRING);
    cr_assert_eq(opt, 42);
    cr_assert_eq(CIOT_OPT_SAS_TOKEN_LIFETIME_S, 43);
    cr_assert_eq(CIOT_OPT_SAS_RENEW_PERCENT, 44);
    cr_assert_eq(CIOT_BACKEND_AZURE, 3);
}

Test(azure_backend, everything_comes_from_the_connection_string)
{
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_AZURE_CONNECTION_STRING, CS), 0);
    ciot_client *c;
    cr_assert_eq(make(&c), 0, "%s", ciot_config_errmsg(cfg));
    cr_assert_eq(ciot__client_port(c), 8883);
    cr_assert_str_eq(ciot__client_sni(c), HUB);
    cr_assert_eq(ciot__client_keepalive(c), 60);
    size_t tl;
    cr_assert_str_eq(ciot__client_thing(c, &tl), "device1");
    cr_assert_str_eq(ciot__client_telemetry_topic(c), "devices/{thing}/messages/events/");
    cr_assert_eq(ciot__client_backend(c)->id, CIOT_BACKEND_AZURE);
    cr_assert_eq(ciot__client_renew_at(c), UINT64_MAX); /* nothing signed before a connection */
    cr_assert_eq(ciot_client_free(c), 0);
}

Test(azure_backend, a_gateway_is_the_tls_target_and_keepalive_is_capped)
{
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_AZURE_CONNECTION_STRING,
                                     CS ";GatewayHostName=edge.local"),
                 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_KEEPALIVE_S, 0), 0);
    ciot_client *c;
    cr_assert_eq(make(&c), 0, "%s", ciot_config_errmsg(cfg));
    cr_assert_str_eq(ciot__client_sni(c), "edge.local");
    cr_assert_eq(ciot__client_keepalive(c), 1177);
    cr_assert_eq(ciot_client_free(c), 0);
}

Test(azure_backend, what_the_hub_does_not_allow_is_refused_with_a_reason)
{
    refused(CIOT_EINVAL, "CIOT_OPT_AZURE_CONNECTION_STRING is required");
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_AZURE_CONNECTION_STRING,
                                     "HostName=" HUB ";DeviceId=d;SharedAccessKey=AA=A"),
                 0);
    refused(CIOT_ECORRUPT, "SharedAccessKey");
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_AZURE_CONNECTION_STRING, "DeviceId=d;x509=true"),
                 0);
    refused(CIOT_ENOTFOUND, "HostName");
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_AZURE_CONNECTION_STRING,
                                     "HostName=" HUB ";DeviceId=d;x509=true"),
                 0);
    refused(CIOT_EINVAL, "x509=true needs CIOT_OPT_TLS_CERT_FILE");
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_AZURE_CONNECTION_STRING, CS), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_PASSWORD, "pw"), 0);
    refused(CIOT_EINVAL, "CIOT_OPT_PASSWORD is not used");
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_PASSWORD, NULL), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_CLIENT_ID, "other"), 0);
    refused(CIOT_EINVAL, "CIOT_OPT_CLIENT_ID is set by the connection string");
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_CLIENT_ID, "device1"), 0); /* the same: fine */
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_USERNAME, "u"), 0);
    refused(CIOT_EINVAL, "CIOT_OPT_USERNAME is set by the connection string");
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_USERNAME, NULL), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_TELEMETRY_TOPIC, "t/{thing}"), 0);
    refused(CIOT_EINVAL, "CIOT_OPT_TELEMETRY_TOPIC cannot be chosen");
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_TELEMETRY_TOPIC, NULL), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_PROTOCOL, 5), 0);
    refused(CIOT_EINVAL, "MQTT 3.1.1");
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_PROTOCOL, 4), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_TLS, 0), 0);
    refused(CIOT_EINVAL, "requires TLS");
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_TLS, 1), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_PORT, 1883), 0);
    refused(CIOT_EINVAL, "port 8883 only");
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_PORT, 8883), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_WILL_TOPIC, "devices/other/messages/events/"), 0);
    refused(CIOT_EINVAL, "the will topic must be the telemetry topic");
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_WILL_TOPIC, "devices/device1/messages/events/a=b"),
                 0);
    ciot_client *c;
    cr_assert_eq(make(&c), 0, "%s", ciot_config_errmsg(cfg));
    cr_assert_eq(ciot_client_free(c), 0);
    /* loopback: TLS off and any port accepted (a local emulator) */
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_HOST, "127.0.0.1"), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_TLS, 0), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_PORT, 1883), 0);
    cr_assert_eq(make(&c), 0, "%s", ciot_config_errmsg(cfg));
    cr_assert_eq(ciot__client_port(c), 1883);
    cr_assert_eq(ciot_client_free(c), 0);
}

Test(azure_backend, each_attempt_signs_a_token_for_now_plus_the_lifetime)
{
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_AZURE_CONNECTION_STRING, CS), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_SAS_TOKEN_LIFETIME_S, 100), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_SAS_RENEW_PERCENT, 25), 0);
    ciot_client *c;
    cr_assert_eq(make(&c), 0, "%s", ciot_config_errmsg(cfg));
    const ciot__backend *be = ciot__client_backend(c);
    void *st = ciot__client_backend_state(c);
    char pw[512], why[160];
    uint64_t renew = 0;
    uint64_t t0 = (uint64_t)time(NULL);
    cr_assert_eq(be->credentials(st, pw, sizeof pw, 5000, &renew, why, sizeof why), 0);
    cr_assert_eq(renew, 5000 + 25000);
    uint64_t se = ciot__azure_token_expiry(st);
    cr_assert(se >= t0 + 100 && se <= (uint64_t)time(NULL) + 100);
    char want[512];
    size_t wl;
    cr_assert_eq(ciot_azure_sas_token(want, sizeof want, &wl, HUB, "device1", NULL, NULL, KEY, se),
                 0);
    cr_assert_str_eq(pw, want);
    /* too small a buffer is an error, never a cut token */
    cr_assert_eq(be->credentials(st, pw, 20, 0, &renew, why, sizeof why), CIOT_ENOSPC);
    cr_assert(strstr(why, "SAS") != NULL, "%s", why);
    cr_assert_eq(ciot_client_free(c), 0);
}

Test(azure_backend, a_ready_made_signature_is_the_password_and_is_not_renewed)
{
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_AZURE_CONNECTION_STRING,
                                     "HostName=" HUB ";DeviceId=device1;SharedAccessSignature="
                                     "SharedAccessSignature sr=x&sig=y&se=1"),
                 0);
    ciot_client *c;
    cr_assert_eq(make(&c), 0, "%s", ciot_config_errmsg(cfg));
    char pw[64], why[64];
    uint64_t renew = 0;
    cr_assert_eq(ciot__client_backend(c)->credentials(ciot__client_backend_state(c), pw, sizeof pw,
                                                      0, &renew, why, sizeof why),
                 1);
    cr_assert_eq(renew, UINT64_MAX);
    cr_assert_eq(ciot_client_free(c), 0);
}

Test(azure_backend, a_module_identity_has_its_own_topics)
{
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_AZURE_CONNECTION_STRING, CS ";ModuleId=mod-a"),
                 0);
    ciot_client *c;
    cr_assert_eq(make(&c), 0, "%s", ciot_config_errmsg(cfg));
    cr_assert_str_eq(ciot__client_telemetry_topic(c), "devices/device1/modules/mod-a/messages/events/");
    ciot_view d, m;
    ciot__azure_identity(ciot__client_backend_state(c), &d, &m);
    cr_assert_eq(d.len, 7);
    cr_assert_eq(m.len, 5);
    cr_assert_eq(memcmp(m.ptr, "mod-a", 5), 0);
    cr_assert_eq(ciot_client_free(c), 0);
}
