/*
 * The shadow store: every shadow the emulator knows, in memory, and (with a
 * data directory) one file per shadow so that documents survive a restart:
 *   <data>/shadows/<thing>/classic.json
 *   <data>/shadows/<thing>/name/<shadowName>.json
 * Thing and shadow names are validated ([a-zA-Z0-9:_-]) before they become
 * file names. The files hold the engine's persisted form (ciot__shadow_save),
 * written atomically.
 */
#include "emu.h"

#include "internal.h"

#include <mosquitto.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static unsigned hash_key(const char *thing, const char *name)
{
    unsigned h = 2166136261u;
    for (const char *p = thing; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    h = (h ^ '/') * 16777619u;
    if (name)
        for (const char *p = name; *p; p++)
            h = (h ^ (unsigned char)*p) * 16777619u;
    return h % EMU_STORE_BUCKETS;
}

static bool same(const emu_shadow *sh, const char *thing, const char *name)
{
    if (strcmp(sh->thing, thing) != 0)
        return false;
    if (!name || !sh->name)
        return !name && !sh->name;
    return strcmp(sh->name, name) == 0;
}

static void shadow_free(emu_shadow *sh)
{
    ciot__shadow_free(sh->doc);
    ciot__free(sh->thing);
    ciot__free(sh->name);
    ciot__free(sh);
}

static emu_shadow *insert(emu_store *s, const char *thing, const char *name, ciot__shadow *doc)
{
    emu_shadow *sh = ciot__calloc(1, sizeof *sh);
    if (!sh)
        return NULL;
    sh->thing = ciot__strndup(thing, strlen(thing));
    sh->name = name ? ciot__strndup(name, strlen(name)) : NULL;
    if (!sh->thing || (name && !sh->name)) {
        ciot__free(sh->thing);
        ciot__free(sh->name);
        ciot__free(sh);
        return NULL;
    }
    sh->doc = doc;
    unsigned b = hash_key(thing, name);
    sh->next = s->buckets[b];
    s->buckets[b] = sh;
    s->count++;
    return sh;
}

emu_shadow *emu_store_get(emu_store *s, const char *thing, const char *name, bool create)
{
    unsigned b = hash_key(thing, name);
    for (emu_shadow *sh = s->buckets[b]; sh; sh = sh->next)
        if (same(sh, thing, name))
            return sh;
    if (!create)
        return NULL;
    const char *qname = name ? name : thing; /* quoted in "No shadow exists with name: …" */
    ciot__shadow *doc;
    if (ciot__shadow_new(&doc, qname, strlen(qname)) != 0)
        return NULL;
    emu_shadow *sh = insert(s, thing, name, doc);
    if (!sh)
        ciot__shadow_free(doc);
    return sh;
}

void emu_store_drop(emu_store *s, emu_shadow *sh)
{
    emu_shadow **pp = &s->buckets[hash_key(sh->thing, sh->name)];
    while (*pp && *pp != sh)
        pp = &(*pp)->next;
    if (!*pp)
        return;
    *pp = sh->next;
    s->count--;
    shadow_free(sh);
}

void emu_store_each(emu_store *s, const char *thing, void (*fn)(emu_shadow *, void *), void *ud)
{
    for (size_t b = 0; b < EMU_STORE_BUCKETS; b++)
        for (emu_shadow *sh = s->buckets[b]; sh; sh = sh->next)
            if (strcmp(sh->thing, thing) == 0)
                fn(sh, ud);
}

static int path_of(char *buf, size_t size, const emu_store *s, const char *thing,
                   const char *name)
{
    int n = name ? snprintf(buf, size, "%s/%s/name/%s.json", s->dir, thing, name)
                 : snprintf(buf, size, "%s/%s/classic.json", s->dir, thing);
    return n > 0 && (size_t)n < size ? 0 : -1;
}

int emu_store_save(emu_store *s, const emu_shadow *sh)
{
    if (!s->dir)
        return 0;
    char path[4096], dir[4096];
    if (path_of(path, sizeof path, s, sh->thing, sh->name) != 0)
        return -1;
    snprintf(dir, sizeof dir, "%s/%s", s->dir, sh->thing);
    int rc = emu_mkdir(dir);
    if (rc == 0 && sh->name) {
        snprintf(dir, sizeof dir, "%s/%s/name", s->dir, sh->thing);
        rc = emu_mkdir(dir);
    }
    char *text = NULL;
    size_t len = 0;
    if (rc == 0)
        rc = ciot__shadow_save(&text, &len, sh->doc) == 0 ? 0 : -1;
    if (rc == 0)
        rc = emu_write_file(path, text, len);
    ciot__free(text);
    if (rc != 0)
        emu_log(MOSQ_LOG_ERR, "could not write %s: %s", path, strerror(errno));
    return rc;
}

/* Loads one file; a bad file is logged and skipped (the shadow then starts
 * empty: its file is rewritten on the next change). */
static int load_one(emu_store *s, const char *path, const char *thing, const char *name)
{
    char *text;
    size_t len;
    if (emu_read_file(&text, &len, path, 1024 * 1024) != 0) {
        emu_log(MOSQ_LOG_WARNING, "skipping %s: %s", path, strerror(errno));
        return 0;
    }
    const char *qname = name ? name : thing;
    ciot__shadow *doc;
    int rc = ciot__shadow_load(&doc, qname, strlen(qname), text, len);
    ciot__free(text);
    if (rc == CIOT_ENOMEM)
        return -1;
    if (rc != 0) {
        emu_log(MOSQ_LOG_WARNING, "skipping %s: not a shadow document (%s)", path,
                ciot_strerror(rc));
        return 0;
    }
    if (!insert(s, thing, name, doc)) {
        ciot__shadow_free(doc);
        return -1;
    }
    return 0;
}

/* "<name>.json" with a valid shadow name -> name copied into out. */
static bool json_file(char *out, size_t size, const char *file, bool (*valid)(const char *, size_t))
{
    size_t n = strlen(file);
    if (n <= 5 || strcmp(file + n - 5, ".json") != 0 || n - 5 >= size)
        return false;
    memcpy(out, file, n - 5);
    out[n - 5] = '\0';
    return valid(out, n - 5);
}

static int load_thing(emu_store *s, const char *thing)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/classic.json", s->dir, thing);
    FILE *probe = fopen(path, "r");
    if (probe) {
        fclose(probe);
        if (load_one(s, path, thing, NULL) != 0)
            return -1;
    }
    snprintf(path, sizeof path, "%s/%s/name", s->dir, thing);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        char name[EMU_MAX_SHADOW_NAME + 1];
        if (!json_file(name, sizeof name, de->d_name, emu_valid_shadow_name))
            continue;
        char file[4096];
        snprintf(file, sizeof file, "%s/%s/name/%s", s->dir, thing, de->d_name);
        rc = load_one(s, file, thing, name);
    }
    closedir(d);
    return rc;
}

int emu_store_init(emu_store *s, const char *data_dir)
{
    memset(s, 0, sizeof *s);
    if (!data_dir)
        return 0;
    size_t n = strlen(data_dir) + sizeof "/shadows";
    s->dir = ciot__malloc(n);
    if (!s->dir)
        return -1;
    snprintf(s->dir, n, "%s/shadows", data_dir);
    if (emu_mkdir(data_dir) != 0 || emu_mkdir(s->dir) != 0) {
        emu_log(MOSQ_LOG_ERR, "cannot create %s: %s", s->dir, strerror(errno));
        emu_store_free(s);
        return -1;
    }
    DIR *d = opendir(s->dir);
    if (!d) {
        emu_store_free(s);
        return -1;
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL)
        if (emu_valid_thing(de->d_name, strlen(de->d_name)))
            rc = load_thing(s, de->d_name);
    closedir(d);
    if (rc != 0)
        emu_store_free(s);
    return rc;
}

void emu_store_free(emu_store *s)
{
    for (size_t b = 0; b < EMU_STORE_BUCKETS; b++) {
        emu_shadow *sh = s->buckets[b];
        while (sh) {
            emu_shadow *next = sh->next;
            shadow_free(sh);
            sh = next;
        }
        s->buckets[b] = NULL;
    }
    s->count = 0;
    ciot__free(s->dir);
    s->dir = NULL;
}
