/* The emulator registry's C API (emulator/registry.h): names, ARNs,
 * settings, atomic writes, load/save/list/remove. */
#define _XOPEN_SOURCE 700 /* nftw */

#include "registry.h"

#include <cloudiot/error.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[128];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void make_tmp(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/ciot-registry.XXXXXX");
    cr_assert_not_null(mkdtemp(tmp));
}

static void remove_tmp(void)
{
    nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(emulator_registry, .init = make_tmp, .fini = remove_tmp);

Test(emulator_registry, names_are_validated_per_kind)
{
    cr_assert(ciot__reg_name_valid(CIOT__REG_THING, "sensor-001"));
    cr_assert(ciot__reg_name_valid(CIOT__REG_THING, "a:b_c-D9"));
    cr_assert_not(ciot__reg_name_valid(CIOT__REG_THING, ""));
    cr_assert_not(ciot__reg_name_valid(CIOT__REG_THING, "a.b"));
    cr_assert_not(ciot__reg_name_valid(CIOT__REG_THING, "a/b"));
    cr_assert_not(ciot__reg_name_valid(CIOT__REG_THING, ".."));
    cr_assert_not(ciot__reg_name_valid(CIOT__REG_THING, NULL));
    char n[131];
    memset(n, 'x', 130);
    n[128] = '\0';
    cr_assert(ciot__reg_name_valid(CIOT__REG_THING, n), "128 is allowed");
    n[128] = 'x';
    n[129] = '\0';
    cr_assert_not(ciot__reg_name_valid(CIOT__REG_THING, n), "129 is not");

    cr_assert(ciot__reg_name_valid(CIOT__REG_POLICY, "Sensor_Policy+=,.@-1"));
    cr_assert_not(ciot__reg_name_valid(CIOT__REG_POLICY, "a b"));
    cr_assert_not(ciot__reg_name_valid(CIOT__REG_POLICY, "a/b"));
    cr_assert_not(ciot__reg_name_valid(CIOT__REG_POLICY, "."));
    cr_assert_not(ciot__reg_name_valid(CIOT__REG_POLICY, ".."));
    cr_assert(ciot__reg_name_valid(CIOT__REG_POLICY, "..."), "not a path component of its own");

    char id[65];
    memset(id, 'a', 64);
    id[64] = '\0';
    cr_assert(ciot__reg_name_valid(CIOT__REG_CERT, id));
    id[3] = 'A';
    cr_assert_not(ciot__reg_name_valid(CIOT__REG_CERT, id), "lowercase only");
    id[3] = 'g';
    cr_assert_not(ciot__reg_name_valid(CIOT__REG_CERT, id));
    id[3] = 'a';
    id[63] = '\0';
    cr_assert_not(ciot__reg_name_valid(CIOT__REG_CERT, id), "63 digits");
    cr_assert_not(ciot__reg_name_valid((ciot__reg_kind)7, "x"));

    cr_assert(ciot__reg_region_valid("eu-central-1"));
    cr_assert_not(ciot__reg_region_valid("EU"));
    cr_assert_not(ciot__reg_region_valid(""));
    cr_assert(ciot__reg_account_valid("000011112222"));
    cr_assert_not(ciot__reg_account_valid("00001111222"));
    cr_assert_not(ciot__reg_account_valid("0000111122223"));
    cr_assert_not(ciot__reg_account_valid("00001111222x"));
}

Test(emulator_registry, open_writes_settings_once_and_arns_use_them)
{
    char dir[256], err[256];
    snprintf(dir, sizeof dir, "%s/data", tmp);
    ciot__registry r;
    cr_assert_eq(ciot__registry_open(&r, dir, "ap-south-1", NULL, true, err, sizeof err), 0, "%s",
                 err);
    cr_assert_str_eq(r.region, "ap-south-1");
    cr_assert_str_eq(r.account, CIOT__REG_DEFAULT_ACCOUNT);
    char arn[256];
    cr_assert_eq(ciot__registry_arn(&r, CIOT__REG_THING, "t1", arn, sizeof arn), 0);
    cr_assert_str_eq(arn, "arn:aws:iot:ap-south-1:123456789012:thing/t1");
    cr_assert_eq(ciot__registry_arn(&r, CIOT__REG_POLICY, "p", arn, sizeof arn), 0);
    cr_assert_str_eq(arn, "arn:aws:iot:ap-south-1:123456789012:policy/p");
    cr_assert_eq(ciot__registry_arn(&r, CIOT__REG_THING, "t1", arn, 10), CIOT_ENOSPC);

    /* Reopened: the settings stay; another region is refused. */
    ciot__registry r2;
    cr_assert_eq(ciot__registry_open(&r2, dir, NULL, NULL, true, err, sizeof err), 0);
    cr_assert_str_eq(r2.region, "ap-south-1");
    cr_assert_eq(ciot__registry_open(&r2, dir, "us-east-1", NULL, true, err, sizeof err),
                 CIOT_EEXIST);
    cr_assert(strstr(err, "ap-south-1") != NULL, "%s", err);
    /* Read-only open (the plugin's): values given override, nothing written. */
    cr_assert_eq(ciot__registry_open(&r2, dir, "us-east-1", NULL, false, err, sizeof err), 0);
    cr_assert_str_eq(r2.region, "us-east-1");
    cr_assert_eq(ciot__registry_open(&r2, dir, NULL, NULL, false, NULL, 0), 0);
    cr_assert_str_eq(r2.region, "ap-south-1");
    cr_assert_eq(ciot__registry_open(&r2, dir, "Bad Region", NULL, true, err, sizeof err),
                 CIOT_EINVAL);
    cr_assert_eq(ciot__registry_open(&r2, NULL, NULL, NULL, true, err, sizeof err), CIOT_EINVAL);

    /* A broken emulator.json is reported, not replaced. */
    char path[300];
    snprintf(path, sizeof path, "%s/emulator.json", dir);
    cr_assert_eq(ciot__write_atomic(path, "{\"region\":", 10, 0644), 0);
    cr_assert_eq(ciot__registry_open(&r2, dir, NULL, NULL, true, err, sizeof err), CIOT_ECORRUPT);
    cr_assert(strstr(err, "emulator.json") != NULL, "%s", err);
    /* A missing data directory reads as an empty registry with the defaults. */
    snprintf(path, sizeof path, "%s/none", tmp);
    cr_assert_eq(ciot__registry_open(&r2, path, NULL, NULL, false, err, sizeof err), 0);
    cr_assert_str_eq(r2.region, CIOT__REG_DEFAULT_REGION);
    char **names;
    size_t n;
    cr_assert_eq(ciot__registry_list(&r2, CIOT__REG_THING, &names, &n), 0);
    cr_assert_eq(n, 0);
}

Test(emulator_registry, certificate_arns_parse_only_for_this_region_and_account)
{
    char dir[256];
    snprintf(dir, sizeof dir, "%s/data", tmp);
    ciot__registry r;
    cr_assert_eq(ciot__registry_open(&r, dir, NULL, NULL, true, NULL, 0), 0);
    char hex[65], arn[200], id[65];
    for (int i = 0; i < 64; i++)
        hex[i] = "0123456789abcdef"[i % 16];
    hex[64] = '\0';
    snprintf(arn, sizeof arn, "arn:aws:iot:us-east-1:123456789012:cert/%s", hex);
    cr_assert_eq(ciot__registry_parse_cert_arn(&r, arn, id), 0);
    cr_assert_str_eq(id, hex);
    cr_assert_eq(ciot__registry_parse_cert_arn(&r, hex, id), 0, "a bare id");
    snprintf(arn, sizeof arn, "arn:aws:iot:eu-west-1:123456789012:cert/%s", hex);
    cr_assert_eq(ciot__registry_parse_cert_arn(&r, arn, id), CIOT_EINVAL);
    snprintf(arn, sizeof arn, "arn:aws:iot:us-east-1:123456789012:thing/%s", hex);
    cr_assert_eq(ciot__registry_parse_cert_arn(&r, arn, id), CIOT_EINVAL);
    snprintf(arn, sizeof arn, "arn:aws:iot:us-east-1:123456789012:cert/%s0", hex);
    cr_assert_eq(ciot__registry_parse_cert_arn(&r, arn, id), CIOT_EINVAL, "65 digits");
    cr_assert_eq(ciot__registry_parse_cert_arn(&r, "arn:aws:iot:us-east-1:123456789012:cert/../x",
                                               id),
                 CIOT_EINVAL);
}

Test(emulator_registry, save_load_list_remove)
{
    char dir[256];
    snprintf(dir, sizeof dir, "%s/data", tmp);
    ciot__registry r;
    cr_assert_eq(ciot__registry_open(&r, dir, NULL, NULL, true, NULL, 0), 0);
    static const char *const names[] = {"zeta", "alpha", "m:1"};
    for (size_t i = 0; i < 3; i++) {
        json_t *doc = json_pack("{s:s,s:i}", "thingName", names[i], "version", 1);
        cr_assert_eq(ciot__registry_save(&r, CIOT__REG_THING, names[i], doc), 0);
        json_decref(doc);
    }
    json_t *arr = json_array();
    cr_assert_eq(ciot__registry_save(&r, CIOT__REG_THING, "x", arr), CIOT_EINVAL, "objects only");
    cr_assert_eq(ciot__registry_save(&r, CIOT__REG_THING, "a/b", arr), CIOT_EINVAL);
    json_decref(arr);

    char path[400];
    cr_assert_eq(ciot__registry_path(&r, CIOT__REG_THING, "alpha", path, sizeof path), 0);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0644);

    json_t *got;
    cr_assert_eq(ciot__registry_load(&r, CIOT__REG_THING, "alpha", &got), 0);
    cr_assert_str_eq(json_string_value(json_object_get(got, "thingName")), "alpha");
    json_decref(got);
    cr_assert_eq(ciot__registry_load(&r, CIOT__REG_THING, "nope", &got), CIOT_ENOTFOUND);
    cr_assert_null(got);
    cr_assert_eq(ciot__registry_load(&r, CIOT__REG_THING, "../emulator", &got), CIOT_EINVAL);

    /* Junk in the directory: skipped by list, reported by load. */
    char junk[400];
    snprintf(junk, sizeof junk, "%s/registry/things/bad name.json", dir);
    cr_assert_eq(ciot__write_atomic(junk, "{}", 2, 0644), 0);
    snprintf(junk, sizeof junk, "%s/registry/things/broken.json", dir);
    cr_assert_eq(ciot__write_atomic(junk, "{\"a\":", 5, 0644), 0);
    cr_assert_eq(ciot__registry_load(&r, CIOT__REG_THING, "broken", &got), CIOT_ECORRUPT);

    char **list;
    size_t n;
    cr_assert_eq(ciot__registry_list(&r, CIOT__REG_THING, &list, &n), 0);
    cr_assert_eq(n, 4);
    cr_assert_str_eq(list[0], "alpha");
    cr_assert_str_eq(list[1], "broken");
    cr_assert_str_eq(list[2], "m:1");
    cr_assert_str_eq(list[3], "zeta");
    ciot__registry_list_free(list, n);

    cr_assert_eq(ciot__registry_remove(&r, CIOT__REG_THING, "zeta"), 0);
    cr_assert_eq(ciot__registry_remove(&r, CIOT__REG_THING, "zeta"), CIOT_ENOTFOUND);
    cr_assert_eq(ciot__registry_list(&r, CIOT__REG_THING, &list, &n), 0);
    cr_assert_eq(n, 3);
    ciot__registry_list_free(list, n);

    int fd;
    cr_assert_eq(ciot__registry_lock(&r, &fd), 0);
    ciot__registry_unlock(fd);
}

Test(emulator_registry, atomic_write_replaces_whole_files_with_the_mode_asked)
{
    char path[256];
    snprintf(path, sizeof path, "%s/f.json", tmp);
    cr_assert_eq(ciot__write_atomic(path, "first version", 13, 0600), 0);
    cr_assert_eq(ciot__write_atomic(path, "2nd", 3, 0600), 0);
    FILE *f = fopen(path, "rb");
    char buf[32] = "";
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(buf, "2nd");
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    /* No temporary file left; a write into a missing directory fails cleanly. */
    char tmpname[300];
    snprintf(tmpname, sizeof tmpname, "%s.tmp.%ld", path, (long)getpid());
    cr_assert_neq(access(tmpname, F_OK), 0);
    snprintf(path, sizeof path, "%s/missing/f.json", tmp);
    cr_assert_eq(ciot__write_atomic(path, "x", 1, 0644), CIOT_EIO);
    cr_assert_eq(ciot__write_atomic(NULL, "x", 1, 0644), CIOT_EINVAL);
    snprintf(path, sizeof path, "%s/a/b/c", tmp);
    cr_assert_eq(ciot__mkdir_p(path, 0755), 0);
    cr_assert_eq(ciot__mkdir_p(path, 0755), 0, "again");
    snprintf(path, sizeof path, "%s/f.json/x", tmp);
    cr_assert_neq(ciot__mkdir_p(path, 0755), 0, "under a file");
}

/* The temporary file is created, never opened as found: a symlink (or a
 * file) planted where a predictable temporary name would be is not written
 * through, so a private key cannot be steered into another file. */
Test(emulator_registry, atomic_write_never_writes_through_a_planted_temporary)
{
    char victim[256], path[256], planted[300];
    snprintf(victim, sizeof victim, "%s/victim", tmp);
    snprintf(path, sizeof path, "%s/key.pem", tmp);
    FILE *f = fopen(victim, "w");
    cr_assert_not_null(f);
    fputs("untouched\n", f);
    fclose(f);
    cr_assert_eq(chmod(victim, 0644), 0);
    /* The names a writer might pick: <path>.tmp and <path>.tmp.<pid>. */
    snprintf(planted, sizeof planted, "%s.tmp.%ld", path, (long)getpid());
    cr_assert_eq(symlink(victim, planted), 0);
    snprintf(planted, sizeof planted, "%s.tmp", path);
    cr_assert_eq(symlink(victim, planted), 0);

    cr_assert_eq(ciot__write_atomic(path, "SECRET\n", 7, 0600), 0);

    char buf[64] = {0};
    f = fopen(victim, "r");
    cr_assert_not_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    cr_assert_str_eq(buf, "untouched\n", "the planted link was written through (%zu bytes)", n);
    struct stat st;
    cr_assert_eq(stat(victim, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0644, "the planted link's target keeps its mode");
    f = fopen(path, "r");
    cr_assert_not_null(f);
    memset(buf, 0, sizeof buf);
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    cr_assert_str_eq(buf, "SECRET\n");
    cr_assert_eq(lstat(path, &st), 0);
    cr_assert(S_ISREG(st.st_mode), "the file itself, not a link");
    cr_assert_eq(st.st_mode & 0777, 0600);
}
