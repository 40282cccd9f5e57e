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
    struct ciot__aws_policy **policies;
    size_t npolicies;
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
    struct emu_twins *twins; /* twin_service.c; NULL until first used */
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
/* Writes a file atomically (tmp + fsync + rename + directory fsync). */
int emu_write_file(const char *path, const char *data, size_t len);
/* mkdir -p for one level below an existing directory (0 when it exists). */
int emu_mkdir(const char *path);

/* identity.c */
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

/* twin_service.c: the Azure device twin ($iothub/twin/...) */
#define EMU_CONTROL_IOTHUB "$CONTROL/cloudiot/v1/iothub"
/* MOSQ_EVT_MESSAGE callback: answers and consumes $iothub/twin/ requests. */
int emu_twin_cb_message(int event, void *event_data, void *userdata);
/* Control ops get-twin and update-twin; false when @p op is not one of
 * them, else fills *status and *result (200) or err. */
bool emu_twin_control(emu *e, const char *op, json_t *req, int *status, json_t **result,
                      char *err, size_t errcap);
void emu_twins_free(emu *e);

#endif /* CIOT_EMU_H */
