/*
 * The emulator's registry: things, certificates and policies kept as one
 * JSON file each under <data>/registry/, plus <data>/emulator.json (region
 * and account). Written by the launcher's provisioning sub-commands, read by
 * the broker plugin at each CONNECT. No mosquitto dependency: plain POSIX
 * files and jansson, so that both sides can use it.
 *
 * Layout (doc/emulator-launcher.md):
 *   <data>/emulator.json                        {"region":..., "account":...}
 *   <data>/registry/things/<thingName>.json
 *   <data>/registry/certificates/<certificateId>.json
 *   <data>/registry/policies/<policyName>.json
 * Every write is atomic (temporary file, fsync, rename, fsync of the
 * directory), so a reader never sees half a file. Names are validated before
 * they become file names.
 *
 * Functions return 0 or a negative CIOT_E* code (include/cloudiot/error.h).
 */
#ifndef CIOT_EMULATOR_REGISTRY_H
#define CIOT_EMULATOR_REGISTRY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define CIOT__REG_DEFAULT_REGION "us-east-1"
#define CIOT__REG_DEFAULT_ACCOUNT "123456789012"

typedef enum ciot__reg_kind {
    CIOT__REG_THING = 0,  /* registry/things, name [a-zA-Z0-9:_-]{1,128} */
    CIOT__REG_CERT = 1,   /* registry/certificates, name = 64 lowercase hex */
    CIOT__REG_POLICY = 2, /* registry/policies, name [\w+=,.@-]{1,128} */
} ciot__reg_kind;

typedef struct ciot__registry {
    char dir[1024];   /* the data directory */
    char region[33];  /* [a-z0-9-]{1,32} */
    char account[13]; /* 12 digits */
} ciot__registry;

/* Whether @p name is valid for @p kind (see ciot__reg_kind). */
bool ciot__reg_name_valid(ciot__reg_kind kind, const char *name);
/* Region: [a-z0-9-]{1,32}; account: exactly 12 digits. */
bool ciot__reg_region_valid(const char *region);
bool ciot__reg_account_valid(const char *account);

/*
 * Opens the registry in @p data_dir. With @p create: creates the directory
 * tree if needed and writes emulator.json on first use with @p region and
 * @p account (NULL: the defaults); if emulator.json exists and a given
 * region or account differs from it, fails with CIOT_EEXIST. Without
 * @p create: reads emulator.json if present (defaults otherwise), given
 * values override it, and nothing is written.
 * @p err (may be NULL) receives a one-line reason on failure.
 * @retval 0, CIOT_EINVAL (bad argument, value or path too long),
 *         CIOT_EEXIST, CIOT_ECORRUPT (emulator.json unreadable), CIOT_EIO
 */
int ciot__registry_open(ciot__registry *r, const char *data_dir, const char *region,
                        const char *account, bool create, char *err, size_t errlen);

/* "arn:aws:iot:<region>:<account>:thing/<name>" (cert/..., policy/...).
 * @retval 0, CIOT_ENOSPC */
int ciot__registry_arn(const ciot__registry *r, ciot__reg_kind kind, const char *name, char *out,
                       size_t outlen);
/* Parses a certificate ARN of this region and account into its id (or
 * accepts a bare 64-hex id). @retval 0, CIOT_EINVAL */
int ciot__registry_parse_cert_arn(const ciot__registry *r, const char *arn, char id[65]);

/* Path of the file of one entry. @retval 0, CIOT_EINVAL (bad name), CIOT_ENOSPC */
int ciot__registry_path(const ciot__registry *r, ciot__reg_kind kind, const char *name, char *out,
                        size_t outlen);
/* Loads one entry; *out is a JSON object (json_decref it).
 * @retval 0, CIOT_EINVAL (bad name), CIOT_ENOTFOUND, CIOT_ECORRUPT, CIOT_EIO */
int ciot__registry_load(const ciot__registry *r, ciot__reg_kind kind, const char *name,
                        json_t **out);
/* Writes one entry atomically (mode 0644). @retval 0, CIOT_EINVAL, CIOT_ENOMEM, CIOT_EIO */
int ciot__registry_save(const ciot__registry *r, ciot__reg_kind kind, const char *name,
                        const json_t *doc);
/* Removes one entry. @retval 0, CIOT_EINVAL, CIOT_ENOTFOUND, CIOT_EIO */
int ciot__registry_remove(const ciot__registry *r, ciot__reg_kind kind, const char *name);
/* The names of every entry of @p kind, sorted (byte order); files whose
 * names are not valid names are skipped. Free with ciot__registry_list_free.
 * @retval 0, CIOT_ENOMEM, CIOT_EIO */
int ciot__registry_list(const ciot__registry *r, ciot__reg_kind kind, char ***names, size_t *n);
void ciot__registry_list_free(char **names, size_t n);

/* An exclusive lock on the registry for read-modify-write sequences
 * (fcntl lock on <data>/registry/.lock; blocks). @retval 0 (*fd set), CIOT_EIO */
int ciot__registry_lock(const ciot__registry *r, int *fd);
void ciot__registry_unlock(int fd);

/* Writes @p len bytes to @p path atomically with @p mode: a temporary file
 * in the same directory, created new under a random name (mkstemp: never a
 * file or link that was there before), fsync, rename over @p path, fsync of
 * the directory. Shared by the launcher and the plugin.
 * @retval 0, CIOT_EINVAL, CIOT_EIO (errno kept) */
int ciot__write_atomic(const char *path, const void *data, size_t len, mode_t mode);
/* Creates @p path and its missing parents with @p mode. @retval 0, CIOT_EIO */
int ciot__mkdir_p(const char *path, mode_t mode);

#endif /* CIOT_EMULATOR_REGISTRY_H */
