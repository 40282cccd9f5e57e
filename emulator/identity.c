/*
 * Who a connection is, and what it may do (doc/emulator.md, "Identity and
 * policies").
 *
 * At CONNECT (MOSQ_EVT_BASIC_AUTH): the client id limit; the certificate id
 * (SHA-256 of the DER, lowercase hex, as AWS) of a verified client
 * certificate; the registry file of that certificate (unknown or INACTIVE:
 * refused); its attached policies, parsed once per connection; the thing
 * name; iot:Connect on client/<clientId>. The registry is read at every
 * CONNECT, so provisioning changes apply to the next connection.
 *
 * On PUBLISH, SUBSCRIBE and delivery (MOSQ_EVT_ACL_CHECK): AWS's limits,
 * then iot:Publish on topic/<t>, iot:Subscribe on topicfilter/<f>,
 * iot:Receive on topic/<t>. AWS closes the connection of a client that
 * breaks a limit or publishes/subscribes outside its policy (lifecycle
 * disconnect reasons CLIENT_ERROR and AUTH_ERROR); a plugin cannot close a
 * connection from inside the check, so the check denies (mosquitto then
 * answers SUBACK 0x80 / PUBACK, the message goes nowhere) and the client is
 * kicked on the broker's next tick. A message a client may not receive is
 * silently not delivered, as on AWS.
 */
#include "emu.h"

#include "core/aws_policy.h"
#include "internal.h"

#include <jansson.h>
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>


static unsigned hash_ptr(const void *p)
{
    uintptr_t v = (uintptr_t)p;
    v ^= v >> 17;
    v *= 0x9E3779B1u;
    return (unsigned)(v >> 7) % EMU_CLIENT_BUCKETS;
}

emu_client *emu_client_find(emu *e, const struct mosquitto *client)
{
    for (emu_client *c = e->clients[hash_ptr(client)]; c; c = c->next)
        if (c->client == client)
            return c;
    return NULL;
}

static void client_free(emu_client *c)
{
    for (size_t i = 0; i < c->npolicies; i++)
        ciot__aws_policy_free(c->policies[i]);
    ciot__free(c->policies);
    ciot__free(c->client_id);
    ciot__free(c->thing);
    ciot__free(c->azure_device);
    ciot__free(c);
}

static void client_remove(emu *e, const struct mosquitto *client)
{
    emu_client **pp = &e->clients[hash_ptr(client)];
    while (*pp) {
        if ((*pp)->client == client) {
            emu_client *c = *pp;
            *pp = c->next;
            client_free(c);
            return;
        }
        pp = &(*pp)->next;
    }
}

void emu_clients_free(emu *e)
{
    for (size_t b = 0; b < EMU_CLIENT_BUCKETS; b++) {
        while (e->clients[b]) {
            emu_client *c = e->clients[b];
            e->clients[b] = c->next;
            client_free(c);
        }
    }
    while (e->kicks) {
        emu_kick *k = e->kicks;
        e->kicks = k->next;
        ciot__free(k->client_id);
        ciot__free(k);
    }
}

/* Removes the records of an earlier connection with this client id that
 * were kept for its persistent session: a new connection replaces them. */
static void forget_sessions_of(emu *e, const char *client_id)
{
    for (size_t b = 0; b < EMU_CLIENT_BUCKETS; b++) {
        emu_client **pp = &e->clients[b];
        while (*pp) {
            emu_client *c = *pp;
            if (c->offline && strcmp(c->client_id, client_id) == 0) {
                *pp = c->next;
                client_free(c);
            } else {
                pp = &c->next;
            }
        }
    }
}

void emu_on_disconnect(emu *e, struct mosquitto *client)
{
    emu_azure_on_disconnect(e, client);
    emu_client *c = emu_client_find(e, client);
    /* A persistent session outlives the connection: mosquitto keeps queueing
     * QoS 1 messages for it, and each is checked (iot:Receive) as it is
     * queued, with the identity and policies of the connection that made it,
     * as AWS does. The record goes when the client connects again. */
    if (c && !c->azure_device && !c->kick_pending && !mosquitto_client_clean_session(client)) {
        c->offline = true;
        return;
    }
    client_remove(e, client);
}

/* ------------------------------------------------------------ kicks */

void emu_schedule_kick(emu *e, const char *client_id, const char *why)
{
    for (emu_kick *k = e->kicks; k; k = k->next)
        if (strcmp(k->client_id, client_id) == 0)
            return;
    emu_kick *k = ciot__calloc(1, sizeof *k);
    if (!k)
        return;
    k->client_id = ciot__strndup(client_id, strlen(client_id));
    if (!k->client_id) {
        ciot__free(k);
        return;
    }
    k->next = e->kicks;
    e->kicks = k;
    emu_log(MOSQ_LOG_NOTICE, "disconnecting %s: %s", client_id, why);
}

static void schedule_kick(emu *e, emu_client *c, const char *why)
{
    if (!c || c->kick_pending || !c->client_id)
        return;
    c->kick_pending = true;
    emu_schedule_kick(e, c->client_id, why);
}

void emu_run_kicks(emu *e)
{
    while (e->kicks) {
        emu_kick *k = e->kicks;
        e->kicks = k->next;
        mosquitto_kick_client_by_clientid(k->client_id, true);
        ciot__free(k->client_id);
        ciot__free(k);
    }
}

/* ------------------------------------------------------------ certificates */

int emu_cert_cn(const void *x509, char cn[256])
{
    /* The CN's own length, not X509_NAME_get_text_by_NID(), which truncates
     * silently to the buffer: a longer CN must not be read as its prefix. */
    cn[0] = '\0';
    X509_NAME *subj = X509_get_subject_name((X509 *)(uintptr_t)x509);
    int at = subj ? X509_NAME_get_index_by_NID(subj, NID_commonName, -1) : -1;
    if (at < 0)
        return 0;
    const ASN1_STRING *data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, at));
    int len = data ? ASN1_STRING_length(data) : -1;
    if (len < 0)
        return -1;
    if (len > 255)
        return -2;
    memcpy(cn, ASN1_STRING_get0_data(data), (size_t)len);
    cn[len] = '\0';
    return (size_t)len == strlen(cn) ? 0 : -1; /* -1: a NUL inside the CN */
}

static int cert_id_and_cn(const void *x509, char id[65], char cn[256])
{
    X509 *cert = (X509 *)(uintptr_t)x509;
    unsigned char *der = NULL;
    int n = i2d_X509(cert, &der);
    if (n <= 0)
        return -1;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int ok = EVP_Digest(der, (size_t)n, md, &mdlen, EVP_sha256(), NULL);
    OPENSSL_free(der);
    if (!ok || mdlen != 32)
        return -1;
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < 32; i++) {
        id[2 * i] = hex[md[i] >> 4];
        id[2 * i + 1] = hex[md[i] & 15];
    }
    id[64] = '\0';
    return emu_cert_cn(cert, cn);
}

json_t *emu_registry_read(const emu *e, const char *kind, const char *name)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/registry/%s/%s.json", e->data_dir, kind, name) >=
        (int)sizeof path)
        return NULL;
    char *text;
    size_t len;
    if (emu_read_file(&text, &len, path, 1024 * 1024) != 0) {
        if (errno != ENOENT)
            emu_log(MOSQ_LOG_WARNING, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    json_error_t err;
    json_t *root = json_loadb(text, len, 0, &err);
    ciot__free(text);
    if (!json_is_object(root)) {
        emu_log(MOSQ_LOG_WARNING, "%s: not a JSON object", path);
        json_decref(root);
        return NULL;
    }
    return root;
}

/* Parses the policies attached to a certificate into c->policies. A policy
 * that is missing or does not parse is left out (logged): it can only
 * allow less. */
static int load_policies(emu *e, emu_client *c, json_t *names)
{
    size_t n = json_array_size(names);
    if (n == 0)
        return 0;
    c->policies = ciot__calloc(n, sizeof *c->policies);
    if (!c->policies)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const char *pname = json_string_value(json_array_get(names, i));
        if (!pname || !emu_valid_policy_name(pname, strlen(pname))) {
            emu_log(MOSQ_LOG_WARNING, "certificate of %s: bad policy name", c->client_id);
            continue;
        }
        json_t *pol = emu_registry_read(e, "policies", pname);
        const char *doc = json_string_value(json_object_get(pol, "policyDocument"));
        if (!doc) {
            emu_log(MOSQ_LOG_WARNING, "policy %s: missing or without policyDocument", pname);
            json_decref(pol);
            continue;
        }
        char err[256];
        ciot__aws_policy *p = NULL;
        int rc = ciot__aws_policy_parse(&p, doc, strlen(doc), err, sizeof err);
        json_decref(pol);
        if (rc == CIOT_ENOMEM)
            return -1;
        if (rc != 0) {
            emu_log(MOSQ_LOG_WARNING, "policy %s left out: %s", pname, err);
            continue;
        }
        c->policies[c->npolicies++] = p;
    }
    return 0;
}

static bool in_array(json_t *arr, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        const char *x = json_string_value(v);
        if (x && strcmp(x, s) == 0)
            return true;
    }
    return false;
}

static int eval(const emu *e, const emu_client *c, const char *action, const char *kind,
                const char *resource)
{
    char arn[EMU_MAX_TOPIC + 512];
    if (snprintf(arn, sizeof arn, "arn:aws:iot:%s:%s:%s/%s", e->region, e->account, kind,
                 resource) >= (int)sizeof arn)
        return CIOT__POLICY_IMPLICIT_DENY;
    ciot__aws_policy_ctx ctx = {c->client_id, c->thing, c->thing_attached};
    return ciot__aws_policy_eval((const ciot__aws_policy *const *)c->policies, c->npolicies,
                                 action, arn, &ctx);
}

/* The registry's verdict on a certificate; fills c. MOSQ_ERR_SUCCESS,
 * MOSQ_ERR_AUTH or MOSQ_ERR_NOMEM. */
static int authorize_cert(emu *e, emu_client *c, const char *cert_id, const char *cn)
{
    if (!e->data_dir) {
        emu_log(MOSQ_LOG_NOTICE, "refusing %s: no registry (plugin_opt_data_dir not set)",
                c->client_id);
        return MOSQ_ERR_AUTH;
    }
    json_t *cert = emu_registry_read(e, "certificates", cert_id);
    if (!cert) {
        emu_log(MOSQ_LOG_NOTICE, "refusing %s: certificate %s is not registered", c->client_id,
                cert_id);
        return MOSQ_ERR_AUTH;
    }
    const char *status = json_string_value(json_object_get(cert, "status"));
    if (!status || strcmp(status, "ACTIVE") != 0) {
        emu_log(MOSQ_LOG_NOTICE, "refusing %s: certificate %s is %s", c->client_id, cert_id,
                status ? status : "without status");
        json_decref(cert);
        return MOSQ_ERR_AUTH;
    }
    json_t *things = json_object_get(cert, "things");
    c->thing_attached = in_array(things, c->client_id);
    const char *thing = c->thing_attached ? c->client_id : cn;
    c->thing = ciot__strndup(thing, strlen(thing));
    if (!c->thing) {
        json_decref(cert);
        return MOSQ_ERR_NOMEM;
    }
    if (!c->thing_attached && in_array(things, cn))
        c->thing_attached = true;
    int rc = load_policies(e, c, json_object_get(cert, "policies"));
    json_decref(cert);
    if (rc != 0)
        return MOSQ_ERR_NOMEM;
    if (eval(e, c, "iot:Connect", "client", c->client_id) != CIOT__POLICY_ALLOW) {
        emu_log(MOSQ_LOG_NOTICE, "refusing %s: no policy allows iot:Connect", c->client_id);
        return MOSQ_ERR_AUTH;
    }
    return MOSQ_ERR_SUCCESS;
}

int emu_on_basic_auth(emu *e, struct mosquitto *client, const char *username,
                      const char *password)
{
    client_remove(e, client); /* a context is authenticated once; be safe */
    const char *id = mosquitto_client_id(client);
    if (!id)
        id = "";
    size_t idlen = strlen(id);
    if (idlen > EMU_MAX_CLIENT_ID) {
        emu_log(MOSQ_LOG_NOTICE, "refusing a client id of %zu bytes (AWS: at most %d)", idlen,
                EMU_MAX_CLIENT_ID);
        return MOSQ_ERR_AUTH;
    }
    emu_client *c = ciot__calloc(1, sizeof *c);
    if (!c)
        return MOSQ_ERR_NOMEM;
    c->client = client;
    c->client_id = ciot__strndup(id, idlen);
    if (!c->client_id) {
        client_free(c);
        return MOSQ_ERR_NOMEM;
    }
    int rc = MOSQ_ERR_SUCCESS;
    void *x509 = NULL;
    if (emu_azure_username(username)) {
        rc = emu_azure_auth(e, c, username, password);
    } else if ((x509 = mosquitto_client_certificate(client)) != NULL) {
        char cert_id[65], cn[256];
        int crc = cert_id_and_cn(x509, cert_id, cn);
        if (crc != 0) {
            emu_log(MOSQ_LOG_NOTICE, "refusing %s: %s", id,
                    crc == -2 ? "the client certificate's CN is longer than 255 bytes"
                              : "unreadable client certificate");
            rc = MOSQ_ERR_AUTH;
        } else if (strcmp(cn, e->admin_cn) == 0) {
            c->admin = true;
        } else if (!e->enforce) {
            c->thing = ciot__strndup(cn, strlen(cn));
            rc = c->thing ? MOSQ_ERR_SUCCESS : MOSQ_ERR_NOMEM;
        } else {
            rc = authorize_cert(e, c, cert_id, cn);
        }
        X509_free(x509);
    } else if (e->admin_password && username && password && strcmp(username, e->admin_cn) == 0 &&
               strlen(password) == strlen(e->admin_password) &&
               CRYPTO_memcmp(password, e->admin_password, strlen(password)) == 0) {
        c->admin = true;
    } else if (!e->enforce) {
        c->thing = ciot__strndup(id, idlen);
        rc = c->thing ? MOSQ_ERR_SUCCESS : MOSQ_ERR_NOMEM;
    } else {
        emu_log(MOSQ_LOG_NOTICE, "refusing %s: no client certificate (policies are enforced)", id);
        rc = MOSQ_ERR_AUTH;
    }
    if (rc != MOSQ_ERR_SUCCESS) {
        client_free(c);
        return rc;
    }
    client_remove(e, client); /* a stale record on a reused context */
    forget_sessions_of(e, c->client_id);
    unsigned b = hash_ptr(client);
    c->next = e->clients[b];
    e->clients[b] = c;
    emu_log(MOSQ_LOG_INFO, "%s connected as %s%s%s", id, c->admin ? "admin" : "thing ",
            c->admin ? "" : c->thing, c->thing_attached ? " (attached)" : "");
    return MOSQ_ERR_SUCCESS;
}

/* ------------------------------------------------------------ ACL */

/* Slashes counted as AWS does: the Basic Ingest prefix $aws/rules/<rule>/
 * is not counted. */
static int slashes(const char *t)
{
    if (strncmp(t, "$aws/rules/", 11) == 0) {
        const char *r = strchr(t + 11, '/');
        t = r ? r + 1 : t + strlen(t);
    }
    int n = 0;
    for (; *t; t++)
        n += *t == '/';
    return n;
}

static const char *limit_broken(const char *topic, int access, uint32_t payloadlen, int qos,
                                bool retain)
{
    if (strlen(topic) > EMU_MAX_TOPIC)
        return "topic longer than 256 bytes";
    if (slashes(topic) > EMU_MAX_SLASHES)
        return "more than 7 slashes in the topic";
    if (qos > 1)
        return "QoS 2 is not supported";
    if (access == MOSQ_ACL_WRITE && payloadlen > EMU_MAX_PAYLOAD)
        return "payload larger than 128 KB";
    if (access == MOSQ_ACL_WRITE && retain && topic[0] == '$')
        return "RETAIN on a reserved ($) topic";
    if (access == MOSQ_ACL_WRITE && emu_shadow_reply_topic(topic))
        return "a shadow reply topic (AWS allows Subscribe only; the service publishes there)";
    return NULL;
}

int emu_on_acl_check(emu *e, struct mosquitto *client, const char *topic, int access,
                     uint32_t payloadlen, int qos, bool retain)
{
    emu_client *c = emu_client_find(e, client);
    if (!c) {
        /* Not seen at CONNECT: mosquitto skips the plugin's authentication on
         * a listener with use_identity_as_username or use_subject_as_username.
         * Decide now; a refused client is disconnected on the next tick. */
        const char *id = mosquitto_client_id(client);
        if (!id)
            return MOSQ_ERR_ACL_DENIED;
        if (access == MOSQ_ACL_READ && emu_azure_username(mosquitto_client_username(client)))
            return emu_azure_acl_offline(id, topic); /* an offline persistent session */
        emu_log(MOSQ_LOG_WARNING, "%s was not authenticated at CONNECT (do not set "
                                  "use_identity_as_username with this plugin)", id);
        if (emu_on_basic_auth(e, client, mosquitto_client_username(client), NULL) !=
            MOSQ_ERR_SUCCESS) {
            emu_schedule_kick(e, id, "not authorized");
            return MOSQ_ERR_ACL_DENIED;
        }
        c = emu_client_find(e, client);
        if (!c)
            return MOSQ_ERR_ACL_DENIED;
    }
    if (c->offline && access != MOSQ_ACL_READ)
        return MOSQ_ERR_ACL_DENIED;
    if (c->admin)
        return MOSQ_ERR_SUCCESS;
    if (c->azure_device)
        return emu_azure_acl(e, c, topic, access, qos);
    if (access == MOSQ_ACL_UNSUBSCRIBE)
        return MOSQ_ERR_SUCCESS;
    if (strncmp(topic, "$CONTROL/", 9) == 0) {
        if (access != MOSQ_ACL_READ)
            emu_log(MOSQ_LOG_NOTICE, "%s may not use %s (admin only)", c->client_id, topic);
        return MOSQ_ERR_ACL_DENIED;
    }
    if (access == MOSQ_ACL_WRITE || access == MOSQ_ACL_SUBSCRIBE) {
        const char *why = limit_broken(topic, access, payloadlen, qos, retain);
        if (why) {
            char msg[128];
            snprintf(msg, sizeof msg, "%s (%s)", why,
                     access == MOSQ_ACL_WRITE ? "PUBLISH" : "SUBSCRIBE");
            schedule_kick(e, c, msg);
            return MOSQ_ERR_ACL_DENIED;
        }
    }
    if (!e->enforce)
        return MOSQ_ERR_SUCCESS;
    const char *action = access == MOSQ_ACL_WRITE       ? "iot:Publish"
                         : access == MOSQ_ACL_SUBSCRIBE ? "iot:Subscribe"
                                                        : "iot:Receive";
    const char *kind = access == MOSQ_ACL_SUBSCRIBE ? "topicfilter" : "topic";
    int verdict = eval(e, c, action, kind, topic);
    if (verdict == CIOT__POLICY_ALLOW)
        return MOSQ_ERR_SUCCESS;
    if (access != MOSQ_ACL_READ) {
        char msg[EMU_MAX_TOPIC + 96];
        snprintf(msg, sizeof msg, "%s on %s %s", action, topic,
                 verdict == CIOT__POLICY_EXPLICIT_DENY ? "explicitly denied" : "not allowed");
        schedule_kick(e, c, msg);
    }
    return MOSQ_ERR_ACL_DENIED;
}
