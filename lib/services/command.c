/* Commands: one subscription to the backend's command filter, dispatch by
 * the last topic level to handlers registered by name. */
#include "client/service.h"
#include "core/utf8.h"

#include <cloudiot/command.h>
#include <cloudiot/topic.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

struct entry {
    char *name;
    size_t len;
    ciot_command_fn fn;
    void *ud;
};

struct ciot__commands {
    pthread_mutex_t lock;
    struct entry *v;
    size_t n, cap;
    ciot_command_fn dflt, err;
    void *dflt_ud, *err_ud;
    char *filter; /* subscribed once, on the first registration */
    size_t filter_len;
};

struct ciot_command {
    const char *topic, *name, *payload;
    size_t topic_len, name_len, payload_len;
    ciot_json_value root;
    int error;
    char text[160];
};

int ciot__commands_new(struct ciot__commands **out)
{
    struct ciot__commands *r = ciot__calloc(1, sizeof *r);
    if (!r)
        return CIOT_ENOMEM;
    pthread_mutex_init(&r->lock, NULL);
    *out = r;
    return 0;
}

void ciot__commands_free(struct ciot__commands *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        ciot__free(r->v[i].name);
    ciot__free(r->v);
    ciot__free(r->filter);
    pthread_mutex_destroy(&r->lock);
    ciot__free(r);
}

static bool name_ok(const char *s, size_t len)
{
    return s && len >= 1 && len <= 128 && !memchr(s, '/', len) && ciot_topic_name_check(s, len) == 0;
}

static int deliver(ciot_client *c, ciot_command_fn fn, void *ud, ciot_command *cmd)
{
    ciot__client_cb_enter(c);
    int rc = fn(c, cmd, ud);
    ciot__client_cb_leave(c, rc);
    return 0;
}

static int on_message(ciot_client *c, const ciot_event *msg, void *ud)
{
    struct ciot__commands *r = ud;
    ciot_command cmd = {0};
    size_t plen;
    cmd.topic = ciot_event_topic(msg, &cmd.topic_len);
    cmd.payload = ciot_event_payload(msg, &plen);
    cmd.payload_len = plen;
    size_t at = cmd.topic_len;
    while (at > 0 && cmd.topic[at - 1] != '/')
        at--;
    cmd.name = cmd.topic + at;
    cmd.name_len = cmd.topic_len - (size_t)(cmd.name - cmd.topic);
    if (!cmd.payload)
        cmd.payload = "";

    if (!ciot__utf8_valid(cmd.payload, cmd.payload_len, true)) {
        cmd.error = CIOT_EPROTOCOL;
        snprintf(cmd.text, sizeof cmd.text, "command \"%.*s\": the payload is not UTF-8",
                 (int)(cmd.name_len > 64 ? 64 : cmd.name_len), cmd.name);
    } else if (ciot_json_find(cmd.payload, cmd.payload_len, NULL, 0, &cmd.root) != 0 ||
               cmd.root.type != CIOT_JSON_OBJECT) {
        cmd.error = CIOT_EPROTOCOL;
        snprintf(cmd.text, sizeof cmd.text, "command \"%.*s\": the payload is not a JSON object",
                 (int)(cmd.name_len > 64 ? 64 : cmd.name_len), cmd.name);
        cmd.root.type = 0;
    }
    ciot_command_fn fn = NULL;
    void *fud = NULL;
    pthread_mutex_lock(&r->lock);
    if (!cmd.error) {
        for (size_t i = 0; i < r->n; i++) {
            if (r->v[i].len == cmd.name_len && memcmp(r->v[i].name, cmd.name, cmd.name_len) == 0) {
                fn = r->v[i].fn;
                fud = r->v[i].ud;
            }
        }
        if (!fn && r->dflt) {
            fn = r->dflt;
            fud = r->dflt_ud;
        }
        if (!fn) {
            cmd.error = CIOT_ENOTFOUND;
            snprintf(cmd.text, sizeof cmd.text, "command \"%.*s\": no handler",
                     (int)(cmd.name_len > 64 ? 64 : cmd.name_len), cmd.name);
        }
    }
    if (cmd.error) {
        fn = r->err;
        fud = r->err_ud;
    }
    pthread_mutex_unlock(&r->lock);
    if (cmd.error && !fn) {
        ciot__log(CIOT_LOG_WARN, "%s", cmd.text);
        return 0;
    }
    return deliver(c, fn, fud, &cmd);
}

/* The backend's command filter for this client's thing. */
static int make_filter(ciot_client *c, char **out, size_t *out_len)
{
    const char *tpl = ciot__client_backend(c)->command_filter;
    size_t tl;
    const char *thing = ciot__client_thing(c, &tl);
    const char *at = strstr(tpl, "{thing}");
    size_t pre = at ? (size_t)(at - tpl) : strlen(tpl);
    const char *post = at ? at + 7 : "";
    size_t n = pre + (at ? tl : 0) + strlen(post);
    char *f = ciot__malloc(n + 1);
    if (!f)
        return CIOT_ENOMEM;
    memcpy(f, tpl, pre);
    if (at)
        memcpy(f + pre, thing, tl);
    memcpy(f + pre + (at ? tl : 0), post, strlen(post) + 1);
    if (ciot_topic_filter_check(f, n) != 0 || (at && (memchr(thing, '/', tl) || memchr(thing, '+', tl) ||
                                                     memchr(thing, '#', tl)))) {
        ciot__free(f);
        ciot__client_set_err(c, "commands: the thing name makes no valid command filter");
        return CIOT_EINVAL;
    }
    *out = f;
    *out_len = n;
    return 0;
}

int ciot_command_register(ciot_client *c, const char *name, size_t name_len, ciot_command_fn fn,
                          void *user_data)
{
    if (!c || !fn)
        return CIOT_EINVAL;
    bool is_default = !name && name_len == 0;
    if (!is_default && !name_ok(name, name_len)) {
        ciot__client_set_err(c, "commands: a name is 1..128 bytes of UTF-8 without '/', '+', '#'");
        return CIOT_EINVAL;
    }
    struct ciot__commands *r = *ciot__client_commands_slot(c);
    pthread_mutex_lock(&r->lock);
    int rc = 0;
    if (!r->filter) {
        char *f;
        size_t fl;
        if ((rc = make_filter(c, &f, &fl)) != 0)
            goto out;
        /* registry lock -> client lock is the only order these two are taken in */
        if ((rc = ciot_client_subscribe(c, f, fl, 1, on_message, r)) != 0) {
            ciot__free(f);
            goto out;
        }
        r->filter = f;
        r->filter_len = fl;
    }
    if (is_default) {
        if (r->dflt) {
            rc = CIOT_EEXIST;
            goto out;
        }
        r->dflt = fn;
        r->dflt_ud = user_data;
        goto out;
    }
    for (size_t i = 0; i < r->n; i++) {
        if (r->v[i].len == name_len && memcmp(r->v[i].name, name, name_len) == 0) {
            ciot__client_set_err(c, "commands: \"%.*s\" has a handler already", (int)name_len, name);
            rc = CIOT_EEXIST;
            goto out;
        }
    }
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8;
        struct entry *v = ciot__realloc(r->v, cap * sizeof *v);
        if (!v) {
            rc = CIOT_ENOMEM;
            goto out;
        }
        r->v = v;
        r->cap = cap;
    }
    char *copy = ciot__strndup(name, name_len);
    if (!copy) {
        rc = CIOT_ENOMEM;
        goto out;
    }
    r->v[r->n++] = (struct entry){copy, name_len, fn, user_data};
out:
    pthread_mutex_unlock(&r->lock);
    return rc;
}

int ciot_command_unregister(ciot_client *c, const char *name, size_t name_len)
{
    if (!c)
        return CIOT_EINVAL;
    struct ciot__commands *r = *ciot__client_commands_slot(c);
    int rc = CIOT_ENOTFOUND;
    pthread_mutex_lock(&r->lock);
    if (!name && name_len == 0) {
        if (r->dflt) {
            r->dflt = NULL;
            r->dflt_ud = NULL;
            rc = 0;
        }
    } else if (name) {
        for (size_t i = 0; i < r->n; i++) {
            if (r->v[i].len == name_len && memcmp(r->v[i].name, name, name_len) == 0) {
                ciot__free(r->v[i].name);
                r->v[i] = r->v[--r->n];
                rc = 0;
                break;
            }
        }
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}

void ciot_command_set_error_callback(ciot_client *c, ciot_command_fn fn, void *user_data)
{
    if (!c)
        return;
    struct ciot__commands *r = *ciot__client_commands_slot(c);
    pthread_mutex_lock(&r->lock);
    r->err = fn;
    r->err_ud = user_data;
    pthread_mutex_unlock(&r->lock);
}

const char *ciot_command_name(const ciot_command *cmd, size_t *len)
{
    if (len)
        *len = cmd ? cmd->name_len : 0;
    return cmd ? cmd->name : NULL;
}

const char *ciot_command_payload(const ciot_command *cmd, size_t *len)
{
    if (len)
        *len = cmd ? cmd->payload_len : 0;
    return cmd ? cmd->payload : NULL;
}

const char *ciot_command_topic(const ciot_command *cmd, size_t *len)
{
    if (len)
        *len = cmd ? cmd->topic_len : 0;
    return cmd ? cmd->topic : NULL;
}

int ciot_command_args(const ciot_command *cmd, ciot_json_value *out)
{
    if (!cmd || !out)
        return CIOT_EINVAL;
    if (cmd->root.type != CIOT_JSON_OBJECT)
        return CIOT_EPROTOCOL;
    *out = cmd->root;
    return 0;
}

int ciot_command_error(const ciot_command *cmd)
{
    return cmd ? cmd->error : 0;
}

const char *ciot_command_error_text(const ciot_command *cmd)
{
    return cmd ? cmd->text : "";
}
