/* The emulator's registry on disk; see registry.h. */
#include "registry.h"

#include <cloudiot/error.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const kind_dir[] = {"things", "certificates", "policies"};
static const char *const kind_arn[] = {"thing", "cert", "policy"};

#define SET_ERR(...)                                                                       \
    do {                                                                                   \
        if (err && errlen)                                                                 \
            snprintf(err, errlen, __VA_ARGS__);                                            \
    } while (0)

static bool name_char_ok(ciot__reg_kind kind, unsigned char c)
{
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    switch (kind) {
    case CIOT__REG_THING:
        return alnum || c == ':' || c == '_' || c == '-';
    case CIOT__REG_POLICY:
        return alnum || c == '_' || strchr("+=,.@-", c) != NULL;
    case CIOT__REG_CERT:
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    }
    return false;
}

bool ciot__reg_name_valid(ciot__reg_kind kind, const char *name)
{
    if (!name || (unsigned)kind > CIOT__REG_POLICY)
        return false;
    size_t n = strnlen(name, 129);
    if (kind == CIOT__REG_CERT ? n != 64 : (n < 1 || n > 128))
        return false;
    for (size_t i = 0; i < n; i++)
        if (name[i] == '\0' || !name_char_ok(kind, (unsigned char)name[i]))
            return false;
    /* "." and ".." are valid policy names for AWS but not as file names. */
    if (kind == CIOT__REG_POLICY && (strcmp(name, ".") == 0 || strcmp(name, "..") == 0))
        return false;
    return true;
}

bool ciot__reg_region_valid(const char *region)
{
    if (!region)
        return false;
    size_t n = strnlen(region, 33);
    if (n < 1 || n > 32)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = region[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
    }
    return true;
}

bool ciot__reg_account_valid(const char *account)
{
    if (!account || strnlen(account, 13) != 12)
        return false;
    for (size_t i = 0; i < 12; i++)
        if (account[i] < '0' || account[i] > '9')
            return false;
    return true;
}

int ciot__mkdir_p(const char *path, mode_t mode)
{
    char buf[1024];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        return CIOT_EINVAL;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, mode) != 0 && errno != EEXIST)
                return CIOT_EIO;
            buf[i] = c;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return CIOT_EIO;
    }
    return 0;
}

int ciot__write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
    if (!path || (!data && len))
        return CIOT_EINVAL;
    char tmp[4096 + 16];
    int k = snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path);
    if (k < 0 || (size_t)k >= sizeof tmp)
        return CIOT_EINVAL;
    /* A new file of a name nobody can guess (O_EXCL, mode 0600 until the
     * fchmod below): never a file or link someone placed there before. */
    int fd = mkstemp(tmp);
    if (fd < 0)
        return CIOT_EIO;
    (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
    const char *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            goto fail;
        p += w;
        left -= (size_t)w;
    }
    /* open() applies the umask; the caller asked for exactly this mode. */
    if (fchmod(fd, mode) != 0 || fsync(fd) != 0)
        goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0)
        goto fail;
    /* Make the rename durable: fsync the directory. */
    char dir[4096 + 16];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        strcpy(dir, ".");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return 0;
fail:;
    int e = errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    errno = e;
    return CIOT_EIO;
}

static int read_settings(ciot__registry *r, const char *path, bool *found, char *err,
                         size_t errlen)
{
    *found = false;
    json_error_t je;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        if (access(path, F_OK) != 0 && errno == ENOENT)
            return 0;
        SET_ERR("%s: %s", path, je.text);
        return CIOT_ECORRUPT;
    }
    const char *region = json_string_value(json_object_get(j, "region"));
    const char *account = json_string_value(json_object_get(j, "account"));
    if (!json_is_object(j) || !ciot__reg_region_valid(region) || !ciot__reg_account_valid(account)) {
        json_decref(j);
        SET_ERR("%s: %s", path,
                "needs \"region\" ([a-z0-9-]{1,32}) and \"account\" (12 digits)");
        return CIOT_ECORRUPT;
    }
    snprintf(r->region, sizeof r->region, "%s", region);
    snprintf(r->account, sizeof r->account, "%s", account);
    json_decref(j);
    *found = true;
    return 0;
}

int ciot__registry_open(ciot__registry *r, const char *data_dir, const char *region,
                        const char *account, bool create, char *err, size_t errlen)
{
    if (!r || !data_dir || !*data_dir) {
        SET_ERR("no data directory");
        return CIOT_EINVAL;
    }
    memset(r, 0, sizeof *r);
    /* Room for "/registry/certificates/<64>.json.tmp.XXXXXX". */
    if (strlen(data_dir) >= sizeof r->dir - 200) {
        SET_ERR("data directory path too long");
        return CIOT_EINVAL;
    }
    if (region && !ciot__reg_region_valid(region)) {
        SET_ERR("invalid region \"%s\" (expected [a-z0-9-]{1,32})", region);
        return CIOT_EINVAL;
    }
    if (account && !ciot__reg_account_valid(account)) {
        SET_ERR("invalid account \"%s\" (expected 12 digits)", account);
        return CIOT_EINVAL;
    }
    snprintf(r->dir, sizeof r->dir, "%s", data_dir);
    size_t dl = strlen(r->dir);
    while (dl > 1 && r->dir[dl - 1] == '/')
        r->dir[--dl] = '\0';
    snprintf(r->region, sizeof r->region, "%s", CIOT__REG_DEFAULT_REGION);
    snprintf(r->account, sizeof r->account, "%s", CIOT__REG_DEFAULT_ACCOUNT);

    char path[1200];
    snprintf(path, sizeof path, "%s/emulator.json", r->dir);
    bool found;
    int rc = read_settings(r, path, &found, err, errlen);
    if (rc)
        return rc;
    if (!create) {
        if (region)
            snprintf(r->region, sizeof r->region, "%s", region);
        if (account)
            snprintf(r->account, sizeof r->account, "%s", account);
        return 0;
    }
    if (found) {
        if (region && strcmp(region, r->region) != 0) {
            SET_ERR("the data directory is set up for region %s, not %s", r->region,
                    region);
            return CIOT_EEXIST;
        }
        if (account && strcmp(account, r->account) != 0) {
            SET_ERR("the data directory is set up for account %s, not %s",
                    r->account, account);
            return CIOT_EEXIST;
        }
    }
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "%s/registry/%s", r->dir, kind_dir[k]);
        if (ciot__mkdir_p(path, 0755) != 0) {
            SET_ERR("cannot create %s: %s", path, strerror(errno));
            return CIOT_EIO;
        }
    }
    if (!found) {
        if (region)
            snprintf(r->region, sizeof r->region, "%s", region);
        if (account)
            snprintf(r->account, sizeof r->account, "%s", account);
        char buf[128];
        int n = snprintf(buf, sizeof buf, "{\"region\":\"%s\",\"account\":\"%s\"}\n", r->region,
                         r->account);
        snprintf(path, sizeof path, "%s/emulator.json", r->dir);
        if (ciot__write_atomic(path, buf, (size_t)n, 0644) != 0) {
            SET_ERR("cannot write %s: %s", path, strerror(errno));
            return CIOT_EIO;
        }
    }
    return 0;
}

int ciot__registry_arn(const ciot__registry *r, ciot__reg_kind kind, const char *name, char *out,
                       size_t outlen)
{
    if (!r || !name || !out || (unsigned)kind > CIOT__REG_POLICY)
        return CIOT_EINVAL;
    int n = snprintf(out, outlen, "arn:aws:iot:%s:%s:%s/%s", r->region, r->account, kind_arn[kind],
                     name);
    return n < 0 || (size_t)n >= outlen ? CIOT_ENOSPC : 0;
}

int ciot__registry_parse_cert_arn(const ciot__registry *r, const char *arn, char id[65])
{
    if (!r || !arn || !id)
        return CIOT_EINVAL;
    char prefix[128];
    snprintf(prefix, sizeof prefix, "arn:aws:iot:%s:%s:cert/", r->region, r->account);
    const char *p = arn;
    size_t pl = strlen(prefix);
    if (strncmp(arn, prefix, pl) == 0)
        p = arn + pl;
    else if (strncmp(arn, "arn:", 4) == 0)
        return CIOT_EINVAL;
    if (!ciot__reg_name_valid(CIOT__REG_CERT, p))
        return CIOT_EINVAL;
    memcpy(id, p, 65);
    return 0;
}

int ciot__registry_path(const ciot__registry *r, ciot__reg_kind kind, const char *name, char *out,
                        size_t outlen)
{
    if (!r || !out || !ciot__reg_name_valid(kind, name))
        return CIOT_EINVAL;
    int n = snprintf(out, outlen, "%s/registry/%s/%s.json", r->dir, kind_dir[kind], name);
    return n < 0 || (size_t)n >= outlen ? CIOT_ENOSPC : 0;
}

int ciot__registry_load(const ciot__registry *r, ciot__reg_kind kind, const char *name,
                        json_t **out)
{
    if (!out)
        return CIOT_EINVAL;
    *out = NULL;
    char path[1200];
    int rc = ciot__registry_path(r, kind, name, path, sizeof path);
    if (rc)
        return rc;
    FILE *f = fopen(path, "rb");
    if (!f)
        return errno == ENOENT ? CIOT_ENOTFOUND : CIOT_EIO;
    json_error_t je;
    json_t *j = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
    fclose(f);
    if (!j)
        return CIOT_ECORRUPT;
    if (!json_is_object(j)) {
        json_decref(j);
        return CIOT_ECORRUPT;
    }
    *out = j;
    return 0;
}

int ciot__registry_save(const ciot__registry *r, ciot__reg_kind kind, const char *name,
                        const json_t *doc)
{
    char path[1200];
    int rc = ciot__registry_path(r, kind, name, path, sizeof path);
    if (rc)
        return rc;
    if (!json_is_object(doc))
        return CIOT_EINVAL;
    char *text = json_dumps(doc, JSON_COMPACT);
    if (!text)
        return CIOT_ENOMEM;
    size_t n = strlen(text);
    char *buf = realloc(text, n + 2);
    if (!buf) {
        free(text);
        return CIOT_ENOMEM;
    }
    buf[n] = '\n';
    buf[n + 1] = '\0';
    rc = ciot__write_atomic(path, buf, n + 1, 0644);
    free(buf);
    return rc;
}

int ciot__registry_remove(const ciot__registry *r, ciot__reg_kind kind, const char *name)
{
    char path[1200];
    int rc = ciot__registry_path(r, kind, name, path, sizeof path);
    if (rc)
        return rc;
    if (unlink(path) != 0)
        return errno == ENOENT ? CIOT_ENOTFOUND : CIOT_EIO;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void ciot__registry_list_free(char **names, size_t n)
{
    if (!names)
        return;
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

int ciot__registry_list(const ciot__registry *r, ciot__reg_kind kind, char ***names, size_t *n)
{
    if (!r || !names || !n || (unsigned)kind > CIOT__REG_POLICY)
        return CIOT_EINVAL;
    *names = NULL;
    *n = 0;
    char path[1200];
    snprintf(path, sizeof path, "%s/registry/%s", r->dir, kind_dir[kind]);
    DIR *d = opendir(path);
    if (!d)
        return errno == ENOENT ? 0 : CIOT_EIO;
    char **v = NULL;
    size_t len = 0, cap = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l <= 5 || strcmp(e->d_name + l - 5, ".json") != 0)
            continue;
        char name[256];
        if (l - 5 >= sizeof name)
            continue;
        memcpy(name, e->d_name, l - 5);
        name[l - 5] = '\0';
        if (!ciot__reg_name_valid(kind, name))
            continue;
        if (len == cap) {
            size_t nc = cap ? cap * 2 : 16;
            char **nv = realloc(v, nc * sizeof *nv);
            if (!nv) {
                rc = CIOT_ENOMEM;
                break;
            }
            v = nv;
            cap = nc;
        }
        if (!(v[len] = strdup(name))) {
            rc = CIOT_ENOMEM;
            break;
        }
        len++;
    }
    closedir(d);
    if (rc) {
        ciot__registry_list_free(v, len);
        return rc;
    }
    if (len)
        qsort(v, len, sizeof *v, cmp_str);
    *names = v;
    *n = len;
    return 0;
}

int ciot__registry_lock(const ciot__registry *r, int *fd)
{
    if (!r || !fd)
        return CIOT_EINVAL;
    char path[1200];
    snprintf(path, sizeof path, "%s/registry/.lock", r->dir);
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (f < 0)
        return CIOT_EIO;
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    while (fcntl(f, F_SETLKW, &fl) != 0) {
        if (errno != EINTR) {
            close(f);
            return CIOT_EIO;
        }
    }
    *fd = f;
    return 0;
}

void ciot__registry_unlock(int fd)
{
    if (fd >= 0)
        close(fd); /* releases the lock */
}
