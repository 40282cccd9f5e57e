/*
 * The cloudiot emulator: a mosquitto 2.0 plugin (API version 5) that plays
 * AWS IoT Core — identity and policies from a registry on disk, the Device
 * Shadow service, and admin-only control topics (doc/emulator.md).
 *
 * Shared declarations of the plugin's files. Everything here is internal to
 * the module; the only exported symbols are mosquitto_plugin_version, _init
 * and _cleanup (cloudiot_emulator.map). mosquitto calls every callback from
 * its one main thread, so no state below is locked.
 */
#ifndef CIOT_EMU_H
#define CIOT_EMU_H

#include "core/shadow_doc.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mosquitto;
struct ciot__aws_policy;

/* AWS limits the plugin enforces (protocols.md §1.2). */
#define EMU_MAX_CLIENT_ID 128
#define EMU_MAX_TOPIC 256
#define EMU_MAX_SLASHES 7
#define EMU_MAX_PAYLOAD (128 * 1024)
#define EMU_MAX_THING 128
#define EMU_MAX_SHADOW_NAME 64
#define EMU_MAX_POLICY_NAME 128

/* ---------------------------------------------------------------- store */

typedef struct emu_shadow {
    char *thing;
    char *name; /* NULL: the classic shadow */
    ciot__shadow *doc;
    struct emu_shadow *next;
} emu_shadow;

#define EMU_STORE_BUCKETS 256

typedef struct emu_store {
    emu_shadow *buckets[EMU_STORE_BUCKETS];
    size_t count;
    char *dir; /* <data>/shadows, or NULL: memory only */
} emu_store;

/* Loads every shadow under <data_dir>/shadows (data_dir NULL: memory only).
 * A file that cannot be read is logged and skipped. 0 or -1 (out of memory,
 * or the directory cannot be created). */
int emu_store_init(emu_store *s, const char *data_dir);
void emu_store_free(emu_store *s);
/* The shadow of (thing, name); created (not existing) when create is set.
 * NULL when absent and !create, or out of memory. */
emu_shadow *emu_store_get(emu_store *s, const char *thing, const char *name, bool create);
/* Unlinks and frees one shadow (its file, if any, stays). */
void emu_store_drop(emu_store *s, emu_shadow *sh);
/* Writes the shadow's persisted form (tmp file, fsync, rename). Logs and
 * returns -1 on failure; a memory-only store returns 0. */
int emu_store_save(emu_store *s, const emu_shadow *sh);
/* Calls fn for each shadow of thing (every name, classic included). */
void emu_store_each(emu_store *s, const char *thing, void (*fn)(emu_shadow *, void *), void *ud);

/* ---------------------------------------------------------------- names */

bool emu_valid_thing(const char *s, size_t len);
bool emu_valid_shadow_name(const char *s, size_t len);
bool emu_valid_policy_name(const char *s, size_t len);
bool emu_valid_cert_id(const char *s, size_t len);

/* ------------------------------------------------------------- identity */

typedef struct emu_client {
    const struct mosquitto *client; /* key */
    char *client_id;
    char *thing; /* thing name used for ${iot:Connection.Thing.ThingName} */
    bool thing_attached;
    bool admin;
    bool kick_pending;
    bool offline; /* disconnected, its persistent session kept (deliveries still checked) */
    struct ciot__aws_policy **policies;
    size_t npolicies;
    char *azure_device; /* non-NULL: an Azure IoT Hub device (azure_auth.c) */
    int64_t azure_expiry; /* its SAS token's se (0: X.509, no expiry) */
    bool azure_methods;   /* subscribed to $iothub/methods/POST/# */
    struct emu_client *next;
} emu_client;

#define EMU_CLIENT_BUCKETS 256

typedef struct emu_kick {
    char *client_id;
    struct emu_kick *next;
} emu_kick;

/* ------------------------------------------------------------ the plugin */

typedef struct emu {
    void *plugin_id; /* mosquitto_plugin_id_t * */
    char *data_dir;
    char *region;
    char *account;
    char *admin_cn;
    char *admin_password;
    bool enforce;
    emu_store store;
    emu_client *clients[EMU_CLIENT_BUCKETS];
    emu_kick *kicks;
    char *hub_host;                 /* Azure IoT Hub host name (azure_auth.c) */
    struct emu_azure_call *calls;   /* direct methods awaiting the device (azure_service.c) */
    uint64_t call_seq;
    struct emu_twins *twins; /* twin_service.c; NULL until first used */
    struct emu_rules *rules; /* rules_service.c */
} emu;

/* Logging into the broker's log. */
void emu_log(int level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Reads a whole file (at most max bytes) into a NUL-terminated buffer from
 * ciot__malloc. 0, or -1 (missing, too big, I/O error) with errno set. */
int emu_read_file(char **out, size_t *len, const char *path, size_t max);
/* Writes a file atomically, mode 0644: ciot__write_atomic() of registry.c
 * (a fresh temporary of an unguessable name, fsync, rename, directory fsync).
 * 0 or -1 with errno set. */
int emu_write_file(const char *path, const char *data, size_t len);
/* mkdir -p for one level below an existing directory (0 when it exists). */
int emu_mkdir(const char *path);

/* identity.c */
/* <data>/registry/<kind>/<name>.json as a JSON object (kind "things",
 * "certificates", "policies"; name already validated); NULL when missing,
 * unreadable or not an object (logged unless missing). Free with json_decref. */
struct json_t;
struct json_t *emu_registry_read(const emu *e, const char *kind, const char *name);
/* The subject CN of an X509 certificate into cn ("" when it has none): 0,
 * -1 unreadable or holding a NUL, -2 longer than 255 bytes (never truncated). */
int emu_cert_cn(const void *x509, char cn[256]);
int emu_on_basic_auth(emu *e, struct mosquitto *client, const char *username,
                      const char *password);
int emu_on_acl_check(emu *e, struct mosquitto *client, const char *topic, int access,
                     uint32_t payloadlen, int qos, bool retain);
void emu_on_disconnect(emu *e, struct mosquitto *client);
void emu_run_kicks(emu *e);
emu_client *emu_client_find(emu *e, const struct mosquitto *client);
void emu_clients_free(emu *e);

/* shadow_service.c */
enum { EMU_SHADOW_GET = 1, EMU_SHADOW_UPDATE, EMU_SHADOW_DELETE };
/* Parses $aws/things/{thing}/shadow[/name/{name}]/{get,update,delete};
 * thing and name are copied into the buffers (name[0] == 0: classic).
 * Returns the EMU_SHADOW_* op or 0 when the topic is not a shadow request. */
int emu_shadow_topic(const char *topic, char thing[EMU_MAX_THING + 1],
                     char name[EMU_MAX_SHADOW_NAME + 1]);
/* Whether topic is one of the service's reply topics of a shadow
 * (/get|update|delete + /accepted|/rejected, /update/delta,
 * /update/documents): AWS allows only Subscribe there. */
bool emu_shadow_reply_topic(const char *topic);
/* Runs one request, persists a change, publishes the replies on the shadow
 * topics (to every subscriber the broker's ACL lets read them), and leaves
 * the engine's result in *out (free with ciot__shadow_result_free). With
 * from_mqtt false (the control topics, AWS's HTTP API) only the messages of
 * an accepted change are published: /update/accepted, /delta, /documents,
 * /delete/accepted. 0, or -1 when out of memory (nothing published). */
int emu_shadow_request(emu *e, const char *thing, const char *name, int op, const char *req,
                       size_t len, bool from_mqtt, ciot__shadow_result *out);
int emu_on_message(emu *e, const char *topic, const void *payload, uint32_t len);

/* control.c */
#define EMU_CONTROL_IOT_DATA "$CONTROL/cloudiot/v1/iot-data"
#define EMU_CONTROL_IOT "$CONTROL/cloudiot/v1/iot"
int emu_on_control(emu *e, struct mosquitto *client, const char *topic, const void *payload,
                   uint32_t len);

/* azure_auth.c: Azure IoT Hub devices (doc/emulator.md, "Azure IoT Hub") */
#define EMU_AZURE_DEFAULT_HUB "emulator-hub.azure-devices.net"
/* Whether a CONNECT user name has the Azure form {host}/{id}/?api-version=... */
bool emu_azure_username(const char *username);
/* Authenticates an Azure device connection into c (c->client_id set):
 * MOSQ_ERR_SUCCESS, MOSQ_ERR_AUTH (logged with the reason) or MOSQ_ERR_NOMEM. */
int emu_azure_auth(emu *e, emu_client *c, const char *username, const char *password);
/* The ACL of an Azure device connection: its own topics only. */
int emu_azure_acl(emu *e, emu_client *c, const char *topic, int access, int qos);
/* Delivery to the offline persistent session of an Azure device (no
 * emu_client): its own C2D topics only. */
int emu_azure_acl_offline(const char *client_id, const char *topic);
/* On each tick: schedules the kick of connections whose token expired,
 * and answers direct methods that timed out. */
void emu_azure_tick(emu *e);
void emu_schedule_kick(emu *e, const char *client_id, const char *why);

/* azure_service.c: direct methods and cloud-to-device messages */
#define EMU_CONTROL_IOTHUB "$CONTROL/cloudiot/v1/iothub"
/* Handles the iothub control ops this file owns (invoke-device-method,
 * send-c2d-message) and answers them; false for any other op. */
bool emu_azure_control(emu *e, struct mosquitto *client, const char *op, void *req);
/* A device's PUBLISH seen by the plugin ($iothub/methods/res/...). */
void emu_azure_on_message(emu *e, struct mosquitto *client, const char *topic,
                          const void *payload, uint32_t len);
/* A connection went away: its pending calls as the admin are dropped. */
void emu_azure_on_disconnect(emu *e, const struct mosquitto *client);
void emu_azure_free(emu *e);
/* Answers 504 to the direct methods whose response timeout has passed. */
void emu_azure_calls_tick(emu *e);
/* The emu_client of the connected Azure device with this id, or NULL. */
emu_client *emu_azure_find_device(emu *e, const char *device_id);
/* twin_service.c: the Azure device twin ($iothub/twin/...) */
/* MOSQ_EVT_MESSAGE callback: answers and consumes $iothub/twin/ requests. */
int emu_twin_cb_message(int event, void *event_data, void *userdata);
/* Control ops get-twin and update-twin; false when @p op is not one of
 * them, else fills *status and *result (200) or err. */
bool emu_twin_control(emu *e, const char *op, json_t *req, int *status, json_t **result,
                      char *err, size_t errcap);
void emu_twins_free(emu *e);

/* rules_service.c: the rules engine (doc/emulator.md, "Rules engine") */
/* Loads <data>/registry/rules/ (logged per file). 0, or -1 out of memory. */
int emu_rules_init(emu *e);
void emu_rules_free(emu *e);
/* Reloads the rules when their directory changed (at most every 100 ms). */
void emu_rules_tick(emu *e);
/* Runs the rules on a PUBLISH that passed the policy check. */
void emu_rules_on_message(emu *e, const struct mosquitto *client, const char *topic,
                          const void *payload, uint32_t len);
/* Runs the rules on a message the plugin itself published (the shadow
 * service's replies): at once, or queued behind the message being run (one
 * hop further, so service replies cannot loop either). */
void emu_rules_on_service_message(emu *e, const char *topic, const void *payload, size_t len);

#endif /* CIOT_EMU_H */
