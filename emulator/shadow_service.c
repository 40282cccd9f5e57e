/*
 * The Device Shadow service over MQTT (protocols.md §2): requests on
 * $aws/things/{thing}/shadow[/name/{name}]/{get,update,delete}, answered on
 * /accepted, /rejected, /update/delta and /update/documents with the
 * documents the engine (lib/core/shadow_doc) produces.
 *
 * Scope of the replies, as AWS documents it (reserved-topics.md, "Shadow
 * topics"): the request topics are Publish/Subscribe, the reply topics are
 * Subscribe — they go through the message broker to every subscriber that
 * may receive them (iot:Receive). Unlike the Jobs replies (marked "Receive":
 * only to the requester), no shadow reply is addressed to one client, so the
 * replies are published with no client id, and the request itself is left
 * to reach its own subscribers. Clients tell their replies apart by
 * clientToken, as the AWS SDKs do.
 */
#include "emu.h"

#include "internal.h"

#include <mosquitto.h>
#include <mosquitto_broker.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#define PREFIX "$aws/things/"

/* The part after $aws/things/{thing}/shadow[/name/{name}]/ of a shadow
 * topic, thing and name copied out (name[0] == 0: classic); NULL when the
 * topic is not under a valid shadow prefix. */
static const char *shadow_suffix(const char *topic, char thing[EMU_MAX_THING + 1],
                                 char name[EMU_MAX_SHADOW_NAME + 1])
{
    if (strncmp(topic, PREFIX, sizeof PREFIX - 1) != 0)
        return NULL;
    const char *t = topic + sizeof PREFIX - 1;
    const char *slash = strchr(t, '/');
    if (!slash || !emu_valid_thing(t, (size_t)(slash - t)))
        return NULL;
    size_t tlen = (size_t)(slash - t);
    const char *p = slash;
    if (strncmp(p, "/shadow/", 8) != 0)
        return NULL;
    p += 8;
    name[0] = '\0';
    if (strncmp(p, "name/", 5) == 0) {
        const char *n = p + 5;
        const char *ns = strchr(n, '/');
        if (!ns || !emu_valid_shadow_name(n, (size_t)(ns - n)))
            return NULL;
        memcpy(name, n, (size_t)(ns - n));
        name[ns - n] = '\0';
        p = ns + 1;
    }
    memcpy(thing, t, tlen);
    thing[tlen] = '\0';
    return p;
}

int emu_shadow_topic(const char *topic, char thing[EMU_MAX_THING + 1],
                     char name[EMU_MAX_SHADOW_NAME + 1])
{
    char t[EMU_MAX_THING + 1], n[EMU_MAX_SHADOW_NAME + 1];
    const char *p = shadow_suffix(topic, t, n);
    if (!p)
        return 0;
    int op = strcmp(p, "get") == 0      ? EMU_SHADOW_GET
             : strcmp(p, "update") == 0 ? EMU_SHADOW_UPDATE
             : strcmp(p, "delete") == 0 ? EMU_SHADOW_DELETE
                                        : 0;
    if (op) {
        memcpy(thing, t, sizeof t);
        memcpy(name, n, sizeof n);
    }
    return op;
}

bool emu_shadow_reply_topic(const char *topic)
{
    static const char *const replies[] = {
        "get/accepted",    "get/rejected",     "update/accepted", "update/rejected",
        "update/delta",    "update/documents", "delete/accepted", "delete/rejected",
    };
    char t[EMU_MAX_THING + 1], n[EMU_MAX_SHADOW_NAME + 1];
    const char *p = shadow_suffix(topic, t, n);
    for (size_t i = 0; p && i < sizeof replies / sizeof *replies; i++)
        if (strcmp(p, replies[i]) == 0)
            return true;
    return false;
}

static void publish(emu *e, const char *thing, const char *name, const char *suffix,
                    const char *doc, size_t len)
{
    char topic[EMU_MAX_TOPIC + 1];
    int n = name[0] ? snprintf(topic, sizeof topic, PREFIX "%s/shadow/name/%s/%s", thing, name,
                               suffix)
                    : snprintf(topic, sizeof topic, PREFIX "%s/shadow/%s", thing, suffix);
    if (n < 0 || (size_t)n >= sizeof topic)
        return; /* cannot happen: 128 + 64 + the longest suffix fit (§2.1) */
    /* QoS 1: each subscriber gets it at the QoS it subscribed with. */
    int rc = mosquitto_broker_publish_copy(NULL, topic, (int)len, doc, 1, false, NULL);
    if (rc != MOSQ_ERR_SUCCESS)
        emu_log(MOSQ_LOG_ERR, "could not publish on %s (%d)", topic, rc);
    else
        emu_rules_on_service_message(e, topic, doc, len); /* rules may select replies too */
}

int emu_shadow_request(emu *e, const char *thing, const char *name, int op, const char *req,
                       size_t len, bool from_mqtt, ciot__shadow_result *out)
{
    memset(out, 0, sizeof *out);
    const char *key = name[0] ? name : NULL;
    bool known = emu_store_get(&e->store, thing, key, false) != NULL;
    emu_shadow *sh = emu_store_get(&e->store, thing, key, true);
    if (!sh)
        return -1;
    int64_t now = (int64_t)time(NULL);
    int rc;
    const char *verb;
    switch (op) {
    case EMU_SHADOW_GET:
        rc = ciot__shadow_get(out, sh->doc, req, len, now);
        verb = "get";
        break;
    case EMU_SHADOW_UPDATE:
        rc = ciot__shadow_update(out, sh->doc, req, len, now);
        verb = "update";
        break;
    case EMU_SHADOW_DELETE:
        rc = ciot__shadow_delete(out, sh->doc, req, len, now);
        verb = "delete";
        break;
    default:
        return -1;
    }
    if (!known && !ciot__shadow_exists(sh->doc)) {
        emu_store_drop(&e->store, sh); /* a request on an unknown shadow left nothing */
        sh = NULL;
    }
    if (rc != 0)
        return -1;
    char suffix[32];
    if (out->status != 200) {
        if (!from_mqtt)
            return 0;
        snprintf(suffix, sizeof suffix, "%s/rejected", verb);
        publish(e, thing, name, suffix, out->rejected, out->rejected_len);
        return 0;
    }
    if (op == EMU_SHADOW_GET && !from_mqtt)
        return 0;
    if (op != EMU_SHADOW_GET && sh)
        emu_store_save(&e->store, sh); /* logged on failure; the reply still goes out */
    snprintf(suffix, sizeof suffix, "%s/accepted", verb);
    publish(e, thing, name, suffix, out->accepted, out->accepted_len);
    if (op == EMU_SHADOW_UPDATE) {
        if (out->delta)
            publish(e, thing, name, "update/delta", out->delta, out->delta_len);
        if (out->documents)
            publish(e, thing, name, "update/documents", out->documents, out->documents_len);
    }
    return 0;
}

int emu_on_message(emu *e, const char *topic, const void *payload, uint32_t len)
{
    char thing[EMU_MAX_THING + 1], name[EMU_MAX_SHADOW_NAME + 1];
    int op = emu_shadow_topic(topic, thing, name);
    if (!op)
        return MOSQ_ERR_SUCCESS;
    ciot__shadow_result r;
    if (emu_shadow_request(e, thing, name, op, payload, len, true, &r) != 0)
        emu_log(MOSQ_LOG_ERR, "out of memory on %s", topic);
    ciot__shadow_result_free(&r);
    /* The request still reaches its own subscribers (AWS allows subscribing
     * to request topics). */
    return MOSQ_ERR_SUCCESS;
}
