/* Azure IoT Hub building blocks: SAS tokens (protocols.md §4.2 vectors and
 * vectors produced with Microsoft's Node SDK), connection strings (every
 * error), user name and client id, telemetry property bags and C2D topics
 * (§4.5 examples), ENOSPC sizing at every capacity, key wiping, and
 * cross-checks of base64 and HMAC against OpenSSL. */
#include "backend/azure_conn.h"
#include "core/azure.h"
#include "internal.h"

#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double test_scale(void)
{
    const char *s = getenv("CIOT_TEST_SCALE");
    double f = s ? atof(s) : 1.0;
    return f > 0 ? f : 1.0;
}

static long scaled(long n)
{
    long m = (long)((double)n * test_scale());
    return m < 1 ? 1 : m;
}

static uint64_t rng_state = 0x6A09E667F3BCC908ull;
static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

#define K1 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" /* bytes 0x00..0x1f */
#define K2 "bGliY2xvdWRpb3QgdGVzdCBrZXksIG5vdCBhIHNlY3JldA=="
#define K2_TEXT "libcloudiot test key, not a secret"
#define KP "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=" /* bytes 0x20..0x3f */
#define HUB "myhub.azure-devices.net"

/* ---- generic ENOSPC check ------------------------------------------------- */

/* A builder under test: writes into (out, cap), sets *len. */
typedef int (*builder)(char *out, size_t cap, size_t *len, const void *ctx);

/* Runs b at every capacity from 0 to full + 2 with guard bytes after cap:
 * ENOSPC with the exact size below it, the same text at and above it, a
 * NUL only when there is room, and never a byte written past cap. */
static void check_every_cap(builder b, const void *ctx, const char *expect)
{
    size_t full = strlen(expect);
    size_t len = 12345;
    cr_assert_eq(b(NULL, 0, &len, ctx), full ? CIOT_ENOSPC : 0);
    cr_assert_eq(len, full);
    char *buf = malloc(full + 16);
    cr_assert_not_null(buf);
    for (size_t cap = 0; cap <= full + 2; cap++) {
        memset(buf, '#', full + 16);
        len = 12345;
        int rc = b(buf, cap, &len, ctx);
        cr_assert_eq(len, full, "cap %zu: len %zu, want %zu", cap, len, full);
        for (size_t i = cap; i < full + 16; i++)
            cr_assert_eq(buf[i], '#', "cap %zu: byte %zu written past the end", cap, i);
        if (cap < full) {
            cr_assert_eq(rc, CIOT_ENOSPC, "cap %zu: rc %d", cap, rc);
            continue;
        }
        cr_assert_eq(rc, 0, "cap %zu: rc %d", cap, rc);
        cr_assert_eq(memcmp(buf, expect, full), 0, "cap %zu: %.*s", cap, (int)full, buf);
        if (cap > full)
            cr_assert_eq(buf[full], '\0');
    }
    free(buf);
}

/* ---- SAS tokens ----------------------------------------------------------- */

typedef struct sas_case {
    const char *host, *device, *module, *policy, *key;
    uint64_t se;
} sas_case;

static int sas_builder(char *out, size_t cap, size_t *len, const void *ctx)
{
    const sas_case *c = ctx;
    return ciot_azure_sas_token(out, cap, len, c->host, c->device, c->module, c->policy, c->key, c->se);
}

static void expect_token(const sas_case *c, const char *want)
{
    char buf[1024];
    size_t len = 0;
    int rc = sas_builder(buf, sizeof buf, &len, c);
    cr_assert_eq(rc, 0, "rc %d for %s", rc, c->device);
    cr_assert_str_eq(buf, want);
    cr_assert_eq(len, strlen(want));
    check_every_cap(sas_builder, c, want);
}

/* protocols.md §4.2, rows 1-3 */
Test(azure_sas, protocols_vector_device)
{
    sas_case c = {HUB, "device1", NULL, NULL, K1, 1700000000};
    expect_token(&c, "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdevice1"
                     "&sig=gFSfLGMXDOvf906%2FiaX3KwzLLNFHgaFZyCbsGjxtd1Y%3D&se=1700000000");
}

Test(azure_sas, protocols_vector_module)
{
    sas_case c = {HUB, "device1", "mod-a", NULL, K1, 1700000000};
    expect_token(&c, "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdevice1%2Fmodules%2Fmod-a"
                     "&sig=lSP7e3C3mIuB4S9IZdGnjBRu4SF4xizZQcERKKvfERY%3D&se=1700000000");
}

Test(azure_sas, protocols_vector_policy_key_appends_skn)
{
    sas_case c = {HUB, "device1", NULL, "device", KP, 1700000000};
    expect_token(&c, "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdevice1"
                     "&sig=4eKamxQsa4XH%2FAd%2FPeyw2gyPi8s0ob99nab1Lh7JCqo%3D&se=1700000000&skn=device");
}

/*
 * Produced with Microsoft's Node SDK (azure-iot-common 1.13.3,
 * SharedAccessSignature.create with the resource encoded by its
 * encodeUriComponentStrict, node v20), as in peers-and-reliability.md §4.2.
 * The Node SDK orders the fields sr, sig, skn, se; this library follows
 * azure-sdk-for-c and protocols.md (sr, sig, se, skn). Field order is free
 * [DOC], so each Node token is compared with skn moved to the end.
 */
static const struct {
    sas_case c;
    const char *node_token;
} node_vectors[] = {
    {{HUB, "device1", NULL, NULL, K1, 1700000000},
     "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdevice1&sig=gFSfLGMXDOvf906%2FiaX3KwzLLNFHgaFZyCbsGjxtd1Y%3D&se=1700000000"},
    {{HUB, "device1", "mod-a", NULL, K1, 1700000000},
     "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdevice1%2Fmodules%2Fmod-a&sig=lSP7e3C3mIuB4S9IZdGnjBRu4SF4xizZQcERKKvfERY%3D&se=1700000000"},
    {{HUB, "device1", NULL, "device", K2, 1700000000},
     "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdevice1&sig=W8a2LXAXYLw%2BqwhLXUlcgUA%2FMnVWKSZYCE5AY7Ss5sQ%3D&skn=device&se=1700000000"},
    {{"contoso-hub.azure-devices.net", "sensor_01.floor-2", NULL, "pol~1", K2, 4102444800u},
     "SharedAccessSignature sr=contoso-hub.azure-devices.net%2Fdevices%2Fsensor_01.floor-2&sig=tggnlSsQ1YynXEiJ6Q5sJkOsAnE%2Ff1J7sZDbNbzsTcI%3D&skn=pol~1&se=4102444800"},
    {{"contoso-hub.azure-devices.net", "dev'(1)!:=@$,?%", "edge.mod_1", NULL, K2, 1},
     "SharedAccessSignature sr=contoso-hub.azure-devices.net%2Fdevices%2Fdev%27%281%29%21%3A%3D%40%24%2C%3F%25%2Fmodules%2Fedge.mod_1&sig=5o%2FkuKokI2FCQzSYIG8tbHsU2Hcafayo4Ds6tiOBygQ%3D&se=1"},
};

/* Moves "&skn=..." (which Node puts before "&se=") to the end. */
static void skn_last(char *dst, size_t cap, const char *tok)
{
    const char *skn = strstr(tok, "&skn=");
    if (!skn) {
        snprintf(dst, cap, "%s", tok);
        return;
    }
    const char *se = strstr(skn, "&se=");
    cr_assert_not_null(se);
    snprintf(dst, cap, "%.*s%s%.*s", (int)(skn - tok), tok, se, (int)(se - skn), skn);
}

Test(azure_sas, node_sdk_vectors_byte_for_byte)
{
    for (size_t i = 0; i < sizeof node_vectors / sizeof node_vectors[0]; i++) {
        char want[1024];
        skn_last(want, sizeof want, node_vectors[i].node_token);
        expect_token(&node_vectors[i].c, want);
    }
}

/* HMAC-SHA256 + base64 of msg under key, straight through OpenSSL. */
static void ref_sig(char out[64], const unsigned char *key, size_t klen, const char *msg, size_t mlen)
{
    unsigned char mac[32];
    unsigned int ml = 0;
    cr_assert_not_null(HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, mlen, mac, &ml));
    cr_assert_eq(ml, 32u);
    int n = EVP_EncodeBlock((unsigned char *)out, mac, 32);
    cr_assert_eq(n, 44);
}

/*
 * The Node SDK writes '*' as "%2a" (charCodeAt().toString(16)); this
 * library writes "%2A" like azure-sdk-for-c and RFC 3986 §2.1. The hub
 * checks the signature over the sr it receives, so both are valid tokens;
 * they differ only in that byte and therefore in the signature.
 */
Test(azure_sas, star_is_upper_case_unlike_node_sdk)
{
    const char *node = "SharedAccessSignature sr=contoso-hub.azure-devices.net%2Fdevices%2Fdev%2a1"
                       "&sig=28%2BP5iSVHQ14xI4HF9GNp1h8%2B60EN5AZcBKfZIuFOFg%3D&skn=iothubowner&se=18446744073";
    char tok[512];
    size_t len;
    cr_assert_eq(ciot_azure_sas_token(tok, sizeof tok, &len, "contoso-hub.azure-devices.net", "dev*1", NULL,
                                      "iothubowner", K1, 18446744073u),
                 0);
    const char *sr = "contoso-hub.azure-devices.net%2Fdevices%2Fdev%2A1";
    char want_prefix[256];
    snprintf(want_prefix, sizeof want_prefix, "SharedAccessSignature sr=%s&sig=", sr);
    cr_assert_eq(strncmp(tok, want_prefix, strlen(want_prefix)), 0, "%s", tok);
    cr_assert(strstr(tok, "&se=18446744073&skn=iothubowner") != NULL);
    /* Our signature is the HMAC over our sr; Node's is over its own. */
    unsigned char key[32];
    for (int i = 0; i < 32; i++)
        key[i] = (unsigned char)i;
    char sts[256], sig[64] = {0};
    int n = snprintf(sts, sizeof sts, "%s\n18446744073", sr);
    ref_sig(sig, key, 32, sts, (size_t)n);
    char enc[200];
    size_t el = ciot__azure_url_encode(enc, sig, 44);
    enc[el] = '\0';
    cr_assert(strstr(tok, enc) != NULL);
    /* Node's token, checked with its own lower-case sr. */
    n = snprintf(sts, sizeof sts, "%s\n18446744073", "contoso-hub.azure-devices.net%2Fdevices%2Fdev%2a1");
    ref_sig(sig, key, 32, sts, (size_t)n);
    el = ciot__azure_url_encode(enc, sig, 44);
    enc[el] = '\0';
    cr_assert(strstr(node, enc) != NULL);
}

Test(azure_sas, largest_expiry_and_longest_ids)
{
    char dev[129], mod[129];
    memset(dev, '*', 128);
    dev[128] = '\0';
    memset(mod, 'm', 128);
    mod[128] = '\0';
    sas_case c = {HUB, dev, mod, "p o/l", K2, UINT64_MAX};
    char tok[2048];
    size_t len = 0;
    cr_assert_eq(sas_builder(tok, sizeof tok, &len, &c), 0);
    cr_assert(strstr(tok, "&se=18446744073709551615&skn=p%20o%2Fl") != NULL, "%s", tok);
    cr_assert_eq(len, strlen(tok));
    check_every_cap(sas_builder, &c, tok);
}

Test(azure_sas, invalid_arguments)
{
    char out[512];
    size_t len = 77;
#define SAS(o, cap, h, d, m, p, k, se) ciot_azure_sas_token(o, cap, &len, h, d, m, p, k, se)
    cr_assert_eq(SAS(NULL, 10, HUB, "d", NULL, NULL, K1, 1), CIOT_EINVAL);
    cr_assert_eq(SAS(out, sizeof out, NULL, "d", NULL, NULL, K1, 1), CIOT_EINVAL);
    cr_assert_eq(SAS(out, sizeof out, HUB, NULL, NULL, NULL, K1, 1), CIOT_EINVAL);
    cr_assert_eq(SAS(out, sizeof out, HUB, "d", NULL, NULL, NULL, 1), CIOT_EINVAL);
    cr_assert_eq(SAS(out, sizeof out, "", "d", NULL, NULL, K1, 1), CIOT_EINVAL);
    cr_assert_eq(SAS(out, sizeof out, HUB, "", NULL, NULL, K1, 1), CIOT_EINVAL);
    cr_assert_eq(SAS(out, sizeof out, HUB, "d", "", NULL, K1, 1), CIOT_EINVAL);
    cr_assert_eq(SAS(out, sizeof out, HUB, "d", NULL, "", K1, 1), CIOT_EINVAL);
    cr_assert_eq(SAS(out, sizeof out, HUB, "d", NULL, NULL, "", 1), CIOT_EINVAL);
    /* ids outside the registry's set, non-UTF-8, hosts of the wrong form */
    const char *bad_ids[] = {"a/b", "a+b", "a#b", "a b", "d\xc3\xa9", "\xff", "a\tb", "a&b", "a~b"};
    for (size_t i = 0; i < sizeof bad_ids / sizeof *bad_ids; i++) {
        cr_assert_eq(SAS(out, sizeof out, HUB, bad_ids[i], NULL, NULL, K1, 1), CIOT_EINVAL, "%s", bad_ids[i]);
        cr_assert_eq(SAS(out, sizeof out, HUB, "d", bad_ids[i], NULL, K1, 1), CIOT_EINVAL, "%s", bad_ids[i]);
    }
    char longid[130];
    memset(longid, 'a', 129);
    longid[129] = '\0';
    cr_assert_eq(SAS(out, sizeof out, HUB, longid, NULL, NULL, K1, 1), CIOT_EINVAL);
    longid[128] = '\0';
    cr_assert_eq(SAS(out, sizeof out, HUB, longid, NULL, NULL, K1, 1), 0);
    const char *bad_hosts[] = {"a/b", "h:8883", ".hub", "hub.", "-hub", "h\xc3\xa9", "h b", "https://h"};
    for (size_t i = 0; i < sizeof bad_hosts / sizeof *bad_hosts; i++)
        cr_assert_eq(SAS(out, sizeof out, bad_hosts[i], "d", NULL, NULL, K1, 1), CIOT_EINVAL, "%s",
                     bad_hosts[i]);
    char longhost[300];
    memset(longhost, 'h', 256);
    longhost[256] = '\0';
    cr_assert_eq(SAS(out, sizeof out, longhost, "d", NULL, NULL, K1, 1), CIOT_EINVAL);
    /* policy names: UTF-8 without control characters, at most 256 bytes */
    cr_assert_eq(SAS(out, sizeof out, HUB, "d", NULL, "\xc3\x28", K1, 1), CIOT_EINVAL);
    cr_assert_eq(SAS(out, sizeof out, HUB, "d", NULL, "a\nb", K1, 1), CIOT_EINVAL);
    cr_assert_eq(SAS(out, sizeof out, HUB, "d", NULL, "r\xc3\xb4le", K1, 1), 0);
    cr_assert(strstr(out, "&skn=r%C3%B4le") != NULL, "%s", out);
    char longpol[300];
    memset(longpol, 'p', 257);
    longpol[257] = '\0';
    cr_assert_eq(SAS(out, sizeof out, HUB, "d", NULL, longpol, K1, 1), CIOT_ERANGE);
    longpol[256] = '\0';
    cr_assert_eq(SAS(out, sizeof out, HUB, "d", NULL, longpol, K1, 1), 0);
    /* expiry */
    cr_assert_eq(SAS(out, sizeof out, HUB, "d", NULL, NULL, K1, 0), CIOT_ERANGE);
    /* measuring with (NULL, 0) is allowed */
    len = 0;
    cr_assert_eq(SAS(NULL, 0, HUB, "device1", NULL, NULL, K1, 1700000000), CIOT_ENOSPC);
    cr_assert_eq(len, strlen("SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdevice1"
                             "&sig=gFSfLGMXDOvf906%2FiaX3KwzLLNFHgaFZyCbsGjxtd1Y%3D&se=1700000000"));
    /* out_len may be NULL */
    cr_assert_eq(ciot_azure_sas_token(out, sizeof out, NULL, HUB, "d", NULL, NULL, K1, 1), 0);
#undef SAS
}

Test(azure_sas, bad_base64_key_is_ecorrupt)
{
    const char *bad[] = {
        "AAECAwQ",                                       /* length not a multiple of 4 */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",   /* padding missing */
        "AAEC AwQ=",                                     /* whitespace */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n", /* trailing newline */
        "AA=C",                                          /* padding inside */
        "A===",                                          /* three pad characters */
        "====",                                          /* only padding */
        "AAF=",                                          /* non-zero unused bits */
        "AB==",                                          /* non-zero unused bits */
        "-_8=",                                          /* URL-safe alphabet */
        "AAE\xc3\xa9",                                   /* non-ASCII */
    };
    char out[512];
    size_t len;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        cr_assert_eq(ciot_azure_sas_token(out, sizeof out, &len, HUB, "d", NULL, NULL, bad[i], 1), CIOT_ECORRUPT,
                     "key %zu", i);
    char longkey[1100];
    memset(longkey, 'A', 1028);
    longkey[1028] = '\0';
    cr_assert_eq(ciot_azure_sas_token(out, sizeof out, &len, HUB, "d", NULL, NULL, longkey, 1), CIOT_ERANGE);
    longkey[1024] = '\0';
    cr_assert_eq(ciot_azure_sas_token(out, sizeof out, &len, HUB, "d", NULL, NULL, longkey, 1), 0);
    /* shortest keys: one byte */
    cr_assert_eq(ciot_azure_sas_token(out, sizeof out, &len, HUB, "d", NULL, NULL, "AA==", 1), 0);
    cr_assert_eq(ciot_azure_sas_token(out, sizeof out, &len, HUB, "d", NULL, NULL, "AAE=", 1), 0);
}

/* Signatures checked against the openssl command on random keys, ids and
 * expiries: an oracle outside this process and outside our code. */
Test(azure_sas, random_tokens_match_openssl_command)
{
    FILE *probe = popen("openssl version 2>/dev/null", "r");
    char vbuf[128] = {0};
    bool have = probe && fgets(vbuf, sizeof vbuf, probe) != NULL;
    if (probe)
        pclose(probe);
    if (!have)
        cr_skip_test("no openssl command");
    long iters = scaled(40);
    static const char idchars[] = "abcXYZ019-._%*?!(),:=@$'";
    for (long it = 0; it < iters; it++) {
        unsigned char key[64];
        size_t klen = 1 + rnd() % 64;
        for (size_t i = 0; i < klen; i++)
            key[i] = (unsigned char)rnd();
        char kb64[100];
        ciot__b64_encode(kb64, key, klen);
        kb64[ciot__b64_encoded_len(klen)] = '\0';
        char dev[40];
        size_t dl = 1 + rnd() % 30;
        for (size_t i = 0; i < dl; i++)
            dev[i] = idchars[rnd() % (sizeof idchars - 1)];
        dev[dl] = '\0';
        uint64_t se = 1 + rnd() % 4102444800u;
        char tok[1024];
        size_t tl;
        cr_assert_eq(ciot_azure_sas_token(tok, sizeof tok, &tl, HUB, dev, NULL, NULL, kb64, se), 0);
        /* string to sign, built here independently */
        char sr[200];
        size_t sl = 0;
        for (const char *p = HUB "/devices/"; *p; p++)
            sl += (size_t)snprintf(sr + sl, sizeof sr - sl, (*p == '/') ? "%%2F" : "%c", *p);
        for (size_t i = 0; i < dl; i++) {
            unsigned char c = (unsigned char)dev[i];
            bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                        c == '-' || c == '.' || c == '_' || c == '~';
            sl += (size_t)snprintf(sr + sl, sizeof sr - sl, keep ? "%c" : "%%%02X", c);
        }
        char hexkey[130];
        for (size_t i = 0; i < klen; i++)
            snprintf(hexkey + 2 * i, 3, "%02x", key[i]);
        char path[] = "/tmp/ciot_sts_XXXXXX";
        int fd = mkstemp(path);
        cr_assert(fd >= 0);
        FILE *f = fdopen(fd, "w");
        fprintf(f, "%s\n%llu", sr, (unsigned long long)se);
        fclose(f);
        char cmd[512];
        snprintf(cmd, sizeof cmd, "openssl dgst -sha256 -mac HMAC -macopt hexkey:%s -binary < %s | openssl base64 -A",
                 hexkey, path);
        FILE *p = popen(cmd, "r");
        cr_assert_not_null(p);
        char sig[80] = {0};
        cr_assert_not_null(fgets(sig, sizeof sig, p));
        pclose(p);
        remove(path);
        cr_assert_eq(strlen(sig), 44u, "%s", sig);
        char want[1024];
        char sigenc[200];
        sigenc[ciot__azure_url_encode(sigenc, sig, 44)] = '\0';
        snprintf(want, sizeof want, "SharedAccessSignature sr=%s&sig=%s&se=%llu", sr, sigenc,
                 (unsigned long long)se);
        cr_assert_str_eq(tok, want);
    }
}

/* ---- base64 and URL encoding ---------------------------------------------- */

Test(azure_base64, rfc4648_vectors)
{
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        char o[16];
        size_t n = strlen(plain[i]);
        ciot__b64_encode(o, (const unsigned char *)plain[i], n);
        cr_assert_eq(ciot__b64_encoded_len(n), strlen(enc[i]));
        cr_assert_eq(memcmp(o, enc[i], strlen(enc[i])), 0);
        unsigned char d[16];
        size_t dl = 99;
        cr_assert_eq(ciot__b64_decode(d, sizeof d, &dl, enc[i], strlen(enc[i])), 0);
        cr_assert_eq(dl, n);
        cr_assert_eq(memcmp(d, plain[i], n), 0);
        /* exact size needed */
        if (n) {
            cr_assert_eq(ciot__b64_decode(d, n - 1, &dl, enc[i], strlen(enc[i])), CIOT_ENOSPC);
            cr_assert_eq(dl, n);
        }
    }
    size_t dl;
    cr_assert_eq(ciot__b64_decode(NULL, 0, NULL, "Zg==", 4), CIOT_EINVAL);
    cr_assert_eq(ciot__b64_decode(NULL, 0, &dl, NULL, 4), CIOT_EINVAL);
}

/* Random bytes against OpenSSL's EVP_EncodeBlock / EVP_DecodeBlock. */
Test(azure_base64, random_round_trip_matches_openssl)
{
    long iters = scaled(20000);
    for (long it = 0; it < iters; it++) {
        unsigned char in[100], d[100];
        size_t n = rnd() % 100;
        for (size_t i = 0; i < n; i++)
            in[i] = (unsigned char)rnd();
        char ours[140];
        unsigned char ref[140];
        ciot__b64_encode(ours, in, n);
        int rl = EVP_EncodeBlock(ref, in, (int)n);
        cr_assert_eq((size_t)rl, ciot__b64_encoded_len(n));
        cr_assert_eq(memcmp(ours, ref, (size_t)rl), 0);
        size_t dl = 0;
        cr_assert_eq(ciot__b64_decode(d, sizeof d, &dl, ours, (size_t)rl), 0);
        cr_assert_eq(dl, n);
        cr_assert_eq(memcmp(d, in, n), 0);
        /* a random one-byte change: we accept exactly what decodes
         * canonically, i.e. what re-encodes to the same text */
        if (rl) {
            ours[rnd() % (size_t)rl] = (char)(rnd() & 0x7f);
            int rc = ciot__b64_decode(d, sizeof d, &dl, ours, (size_t)rl);
            if (rc == 0) {
                char back[140];
                ciot__b64_encode(back, d, dl);
                cr_assert_eq(ciot__b64_encoded_len(dl), (size_t)rl);
                cr_assert_eq(memcmp(back, ours, (size_t)rl), 0);
            } else {
                cr_assert_eq(rc, CIOT_ECORRUPT);
            }
        }
    }
}

Test(azure_url, encode_keeps_unreserved_only_and_uses_upper_case)
{
    char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (char)i;
    char out[800];
    size_t n = ciot__azure_url_encode(out, all, 256);
    cr_assert_eq(n, ciot__azure_url_encoded_len(all, 256));
    cr_assert_eq(n, 66 + 190 * 3); /* 66 unreserved bytes */
    size_t o = 0;
    for (int i = 0; i < 256; i++) {
        unsigned char c = (unsigned char)i;
        bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '.' || c == '_' || c == '~';
        if (keep) {
            cr_assert_eq(out[o], (char)c);
            o++;
        } else {
            char want[4];
            snprintf(want, sizeof want, "%%%02X", c);
            cr_assert_eq(memcmp(out + o, want, 3), 0, "byte %d", i);
            o += 3;
        }
    }
    char back[256];
    size_t bl;
    cr_assert_eq(ciot__azure_url_decode(back, sizeof back, &bl, out, n), 0);
    cr_assert_eq(bl, 256u);
    cr_assert_eq(memcmp(back, all, 256), 0);
}

Test(azure_url, decode_rejects_malformed_escapes)
{
    const char *bad[] = {"%", "%2", "a%", "a%g0", "%0g", "%%", "%2%41", "x%-1"};
    char out[16];
    size_t n;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        cr_assert_eq(ciot__azure_url_decode(out, sizeof out, &n, bad[i], strlen(bad[i])), CIOT_EPROTOCOL, "%s",
                     bad[i]);
    cr_assert_eq(ciot__azure_url_decode(out, sizeof out, &n, "%2f%2F+a", 8), 0);
    cr_assert_eq(n, 4u);
    cr_assert_eq(memcmp(out, "//+a", 4), 0);
    cr_assert_eq(ciot__azure_url_decode(out, 3, &n, "%2f%2F+a", 8), CIOT_ENOSPC);
    cr_assert_eq(n, 4u);
}

/* ---- identities, user name, client id ------------------------------------ */

typedef struct ident_case {
    const char *host, *device, *module;
} ident_case;

static int user_builder(char *out, size_t cap, size_t *len, const void *ctx)
{
    const ident_case *c = ctx;
    return ciot__azure_username(out, cap, len, c->host, strlen(c->host), c->device, strlen(c->device), c->module,
                                c->module ? strlen(c->module) : 0);
}

static int cid_builder(char *out, size_t cap, size_t *len, const void *ctx)
{
    const ident_case *c = ctx;
    return ciot__azure_client_id(out, cap, len, c->device, strlen(c->device), c->module,
                                 c->module ? strlen(c->module) : 0);
}

Test(azure_ident, username_and_client_id_device_and_module)
{
    ident_case d = {HUB, "device1", NULL};
    ident_case m = {HUB, "device1", "mod-a"};
    check_every_cap(user_builder, &d, "myhub.azure-devices.net/device1/?api-version=2021-04-12");
    check_every_cap(user_builder, &m, "myhub.azure-devices.net/device1/mod-a/?api-version=2021-04-12");
    check_every_cap(cid_builder, &d, "device1");
    check_every_cap(cid_builder, &m, "device1/mod-a");
    /* ids go in raw, as the SDKs write them */
    ident_case s = {HUB, "a$b(c)", "m:1"};
    check_every_cap(user_builder, &s, "myhub.azure-devices.net/a$b(c)/m:1/?api-version=2021-04-12");
}

Test(azure_ident, invalid_identities)
{
    char out[256];
    size_t n;
    cr_assert_eq(ciot__azure_username(out, sizeof out, &n, "h/x", 3, "d", 1, NULL, 0), CIOT_EINVAL);
    cr_assert_eq(ciot__azure_username(out, sizeof out, &n, HUB, strlen(HUB), "d/e", 3, NULL, 0), CIOT_EINVAL);
    cr_assert_eq(ciot__azure_username(out, sizeof out, &n, HUB, strlen(HUB), "d", 1, "", 0), CIOT_EINVAL);
    cr_assert_eq(ciot__azure_username(NULL, 5, &n, HUB, strlen(HUB), "d", 1, NULL, 0), CIOT_EINVAL);
    cr_assert_eq(ciot__azure_username(out, sizeof out, &n, NULL, 0, "d", 1, NULL, 0), CIOT_EINVAL);
    cr_assert_eq(ciot__azure_client_id(out, sizeof out, &n, "d", 1, "m#", 2), CIOT_EINVAL);
    cr_assert_eq(ciot__azure_client_id(out, sizeof out, &n, "d\0e", 3, NULL, 0), CIOT_EINVAL);
    cr_assert_eq(ciot__azure_client_id(out, sizeof out, &n, NULL, 0, NULL, 0), CIOT_EINVAL);
    cr_assert(ciot__azure_id_valid("-.%_*?!(),:=@$'", 15));
    cr_assert_not(ciot__azure_id_valid("a\"b", 3));
}

/* ---- telemetry property bags ---------------------------------------------- */

#define V(s) {s, sizeof(s) - 1}

typedef struct tele_case {
    const char *device, *module;
    const ciot__azure_sysprops *sys;
    const ciot__azure_prop *props;
    size_t n;
} tele_case;

static int tele_builder(char *out, size_t cap, size_t *len, const void *ctx)
{
    const tele_case *c = ctx;
    return ciot__azure_telemetry_topic(out, cap, len, c->device, strlen(c->device), c->module,
                                       c->module ? strlen(c->module) : 0, c->sys, c->props, c->n);
}

/* protocols.md §4.5, telemetry: both forms, byte for byte */
Test(azure_bag, protocols_telemetry_examples)
{
    ciot__azure_sysprops sys = {0};
    sys.content_type = (ciot_view)V("application/json");
    sys.content_encoding = (ciot_view)V("utf-8");
    ciot__azure_prop props[] = {{V("alert"), V("high temp"), true}};
    tele_case c = {"device1", NULL, &sys, props, 1};
    check_every_cap(tele_builder, &c,
                    "devices/device1/messages/events/$.ct=application%2Fjson&$.ce=utf-8&alert=high%20temp");
    tele_case none = {"device1", NULL, NULL, NULL, 0};
    check_every_cap(tele_builder, &none, "devices/device1/messages/events/");
    ciot__azure_sysprops empty = {0};
    tele_case none2 = {"device1", NULL, &empty, NULL, 0};
    check_every_cap(tele_builder, &none2, "devices/device1/messages/events/");
    tele_case mod = {"device1", "mod-a", &sys, props, 1};
    check_every_cap(tele_builder, &mod,
                    "devices/device1/modules/mod-a/messages/events/"
                    "$.ct=application%2Fjson&$.ce=utf-8&alert=high%20temp");
}

/* The seed's telemetry properties, every system property, a null value,
 * an empty value and names that need encoding. */
Test(azure_bag, all_system_properties_in_order_then_application)
{
    ciot__azure_sysprops sys = {
        V("application/json"), V("utf-8"), V("msg-1"), V("corr 1"), V("user@x"), V("2026-11-26T04:56:27.123Z"),
        V("thermostat1"),
    };
    ciot__azure_prop props[] = {
        {V("temperatureAlert"), V("true"), true},
        {V("deviceType"), V("temperature-sensor"), true},
        {V("timestamp"), V("2026-11-26T04:56:27.123Z"), true},
        {V("flag"), {NULL, 0}, false},
        {V("empty"), {"", 0}, true},
        {V("na me&=$"), V("a+b/c?d\xc3\xa9~"), true},
    };
    tele_case c = {"device1", NULL, &sys, props, 6};
    check_every_cap(tele_builder, &c,
                    "devices/device1/messages/events/"
                    "$.ct=application%2Fjson&$.ce=utf-8&$.mid=msg-1&$.cid=corr%201&$.uid=user%40x"
                    "&$.ctime=2026-11-26T04%3A56%3A27.123Z&$.sub=thermostat1"
                    "&temperatureAlert=true&deviceType=temperature-sensor&timestamp=2026-11-26T04%3A56%3A27.123Z"
                    "&flag&empty=&na%20me%26%3D%24=a%2Bb%2Fc%3Fd%C3%A9~");
}

Test(azure_bag, telemetry_rejects_bad_properties)
{
    char out[512];
    size_t n;
    ciot__azure_prop dollar[] = {{V("$.ct"), V("x"), true}};
    ciot__azure_prop empty_name[] = {{{"", 0}, V("x"), true}};
    ciot__azure_prop bad_utf8_name[] = {{V("a\xff"), V("x"), true}};
    ciot__azure_prop bad_utf8_val[] = {{V("a"), V("\xc3"), true}};
    ciot__azure_prop nul_val[] = {{V("a"), {"a\0b", 3}, true}};
    ciot__azure_prop null_ptr[] = {{V("a"), {NULL, 3}, true}};
    const ciot__azure_prop *cases[] = {dollar, empty_name, bad_utf8_name, bad_utf8_val, nul_val, null_ptr};
    for (size_t i = 0; i < 6; i++)
        cr_assert_eq(ciot__azure_telemetry_topic(out, sizeof out, &n, "d", 1, NULL, 0, NULL, cases[i], 1),
                     CIOT_EINVAL, "case %zu", i);
    /* "$" alone or "$x" is an ordinary (encoded) name */
    ciot__azure_prop dollar_ok[] = {{V("$x"), V("1"), true}};
    cr_assert_eq(ciot__azure_telemetry_topic(out, sizeof out, &n, "d", 1, NULL, 0, NULL, dollar_ok, 1), 0);
    cr_assert_str_eq(out, "devices/d/messages/events/%24x=1");
    cr_assert_eq(ciot__azure_telemetry_topic(out, sizeof out, &n, "d", 1, NULL, 0, NULL, NULL, 1), CIOT_EINVAL);
    cr_assert_eq(ciot__azure_telemetry_topic(out, sizeof out, &n, "d/x", 3, NULL, 0, NULL, NULL, 0), CIOT_EINVAL);
    /* $.mid: at most 128 printable ASCII bytes */
    char mid[130];
    memset(mid, 'm', 129);
    ciot__azure_sysprops sys = {0};
    sys.message_id = (ciot_view){mid, 129};
    cr_assert_eq(ciot__azure_telemetry_topic(out, sizeof out, &n, "d", 1, NULL, 0, &sys, NULL, 0), CIOT_EINVAL);
    sys.message_id.len = 128;
    cr_assert_eq(ciot__azure_telemetry_topic(out, sizeof out, &n, "d", 1, NULL, 0, &sys, NULL, 0), 0);
    sys.message_id = (ciot_view)V("a b");
    cr_assert_eq(ciot__azure_telemetry_topic(out, sizeof out, &n, "d", 1, NULL, 0, &sys, NULL, 0), CIOT_EINVAL);
    sys.message_id = (ciot_view){NULL, 0};
    sys.content_type = (ciot_view)V("\xff");
    cr_assert_eq(ciot__azure_telemetry_topic(out, sizeof out, &n, "d", 1, NULL, 0, &sys, NULL, 0), CIOT_EINVAL);
}

Test(azure_bag, telemetry_topic_longer_than_mqtt_allows_is_erange)
{
    static char big[30000];
    memset(big, ' ', sizeof big); /* 3 bytes each once encoded */
    ciot__azure_prop p[] = {{V("v"), {big, sizeof big}, true}};
    size_t n = 0;
    cr_assert_eq(ciot__azure_telemetry_topic(NULL, 0, &n, "d", 1, NULL, 0, NULL, p, 1), CIOT_ERANGE);
    p[0].value.len = 21000; /* 26 + 2 + 63000: fits */
    cr_assert_eq(ciot__azure_telemetry_topic(NULL, 0, &n, "d", 1, NULL, 0, NULL, p, 1), CIOT_ENOSPC);
    cr_assert_eq(n, strlen("devices/d/messages/events/v=") + 63000);
}

/* ---- C2D topics and bag decoding ------------------------------------------ */

static void decode_topic(const char *topic, ciot__azure_prop *props, size_t max, size_t *n, char *buf, size_t cap,
                         int want_rc)
{
    bool matched = false;
    ciot_view dev, mod, bag;
    cr_assert_eq(ciot__azure_c2d_split(&matched, &dev, &mod, &bag, topic, strlen(topic)), 0);
    cr_assert(matched, "%s", topic);
    size_t used = 0;
    cr_assert_eq(ciot__azure_bag_decode(buf, cap, &used, props, max, n, bag.ptr, bag.len), want_rc);
}

static void assert_prop(const ciot__azure_prop *p, const char *name, const char *value)
{
    cr_assert_eq(p->name.len, strlen(name));
    cr_assert_eq(memcmp(p->name.ptr, name, p->name.len), 0);
    if (!value) {
        cr_assert_not(p->has_value);
        cr_assert_eq(p->value.len, 0u);
        return;
    }
    cr_assert(p->has_value);
    cr_assert_eq(p->value.len, strlen(value), "%.*s", (int)p->value.len, p->value.ptr);
    cr_assert_eq(memcmp(p->value.ptr, value, p->value.len), 0);
}

/* protocols.md §4.5, C2D received */
Test(azure_c2d, protocols_c2d_example)
{
    const char *topic =
        "devices/device1/messages/devicebound/%24.to=%2Fdevices%2Fdevice1%2Fmessages%2FdeviceBound&color=red";
    bool matched;
    ciot_view dev, mod, bag;
    cr_assert_eq(ciot__azure_c2d_split(&matched, &dev, &mod, &bag, topic, strlen(topic)), 0);
    cr_assert(matched);
    cr_assert_eq(dev.len, 7u);
    cr_assert_eq(memcmp(dev.ptr, "device1", 7), 0);
    cr_assert_eq(mod.len, 0u);
    ciot__azure_prop props[4];
    size_t n = 0;
    char buf[200];
    decode_topic(topic, props, 4, &n, buf, sizeof buf, 0);
    cr_assert_eq(n, 2u);
    assert_prop(&props[0], "$.to", "/devices/device1/messages/deviceBound");
    assert_prop(&props[1], "color", "red");
}

/* protocols.md §4.4: null as bare key, empty as key=, leading '?' */
Test(azure_c2d, null_empty_and_leading_question_mark)
{
    ciot__azure_prop props[4];
    size_t n = 0;
    char buf[64];
    decode_topic("devices/d/messages/devicebound/?prop1&prop2=&prop3=a%20string", props, 4, &n, buf, sizeof buf, 0);
    cr_assert_eq(n, 3u);
    assert_prop(&props[0], "prop1", NULL);
    assert_prop(&props[1], "prop2", "");
    assert_prop(&props[2], "prop3", "a string");
    /* no bag at all, and empty segments skipped */
    decode_topic("devices/d/messages/devicebound/", props, 4, &n, buf, sizeof buf, 0);
    cr_assert_eq(n, 0u);
    decode_topic("devices/d/messages/devicebound/&&a=1&", props, 4, &n, buf, sizeof buf, 0);
    cr_assert_eq(n, 1u);
    assert_prop(&props[0], "a", "1");
    /* '+' stays '+', '=' inside a value stays, duplicates kept in order */
    decode_topic("devices/d/messages/devicebound/k=a+b=c&k=%c3%A9", props, 4, &n, buf, sizeof buf, 0);
    cr_assert_eq(n, 2u);
    assert_prop(&props[0], "k", "a+b=c");
    assert_prop(&props[1], "k", "\xc3\xa9");
}

Test(azure_c2d, malformed_bags_are_eprotocol)
{
    const char *bad[] = {"a=%", "a=%2", "a=%G0", "%zz=1", "=x", "a=1&=", "a=%FF", "%C3=1", "a=%2x&b=1"};
    ciot__azure_prop props[4];
    char buf[64];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        size_t used = 777, n = 777;
        cr_assert_eq(ciot__azure_bag_decode(buf, sizeof buf, &used, props, 4, &n, bad[i], strlen(bad[i])),
                     CIOT_EPROTOCOL, "%s", bad[i]);
        cr_assert_eq(used, 777u);
        cr_assert_eq(n, 777u);
    }
    size_t used, n;
    cr_assert_eq(ciot__azure_bag_decode(buf, sizeof buf, NULL, props, 4, &n, "a", 1), CIOT_EINVAL);
    cr_assert_eq(ciot__azure_bag_decode(NULL, 4, &used, props, 4, &n, "a", 1), CIOT_EINVAL);
    cr_assert_eq(ciot__azure_bag_decode(buf, sizeof buf, &used, NULL, 4, &n, "a", 1), CIOT_EINVAL);
}

Test(azure_c2d, enospc_reports_exact_bytes_and_count)
{
    const char *bag = "%24.to=%2Fdevices%2Fdevice1%2Fmessages%2FdeviceBound&color=red&x";
    size_t need_bytes = strlen("$.to/devices/device1/messages/deviceBoundcolorredx");
    for (size_t cap = 0; cap <= need_bytes + 1; cap++) {
        for (size_t max = 0; max <= 4; max++) {
            char *buf = malloc(cap ? cap : 1);
            ciot__azure_prop props[4];
            size_t used = 0, n = 0;
            int rc = ciot__azure_bag_decode(cap ? buf : NULL, cap, &used, max ? props : NULL, max, &n, bag,
                                            strlen(bag));
            cr_assert_eq(used, need_bytes);
            cr_assert_eq(n, 3u);
            cr_assert_eq(rc, (cap >= need_bytes && max >= 3) ? 0 : CIOT_ENOSPC, "cap %zu max %zu", cap, max);
            if (rc == 0) {
                assert_prop(&props[0], "$.to", "/devices/device1/messages/deviceBound");
                assert_prop(&props[1], "color", "red");
                assert_prop(&props[2], "x", NULL);
            }
            free(buf);
        }
    }
}

Test(azure_c2d, split_recognises_only_c2d_topics)
{
    const char *no[] = {"devices/device1/messages/events/",
                        "devices//messages/devicebound/",
                        "devices/d/messages/deviceboundx",
                        "devices/d/messages/devicebound",
                        "device/d/messages/devicebound/",
                        "$iothub/methods/POST/reboot/?$rid=1",
                        "devices/d/modules//messages/devicebound/",
                        "devices/d/x/messages/devicebound/",
                        "",
                        "devices/"};
    for (size_t i = 0; i < sizeof no / sizeof *no; i++) {
        bool matched = true;
        ciot_view d = {"unchanged", 9}, m = d, b = d;
        cr_assert_eq(ciot__azure_c2d_split(&matched, &d, &m, &b, no[i], strlen(no[i])), 0);
        cr_assert_not(matched, "%s", no[i]);
        cr_assert_eq(d.len, 9u);
    }
    const char *t = "devices/d1/modules/m1/messages/devicebound/a=b";
    bool matched;
    ciot_view d, m, b;
    cr_assert_eq(ciot__azure_c2d_split(&matched, &d, &m, &b, t, strlen(t)), 0);
    cr_assert(matched);
    cr_assert_eq(d.len, 2u);
    cr_assert_eq(memcmp(m.ptr, "m1", 2), 0);
    cr_assert_eq(b.len, 3u);
    cr_assert_eq(ciot__azure_c2d_split(NULL, &d, &m, &b, t, strlen(t)), CIOT_EINVAL);
}

/* Encoding then decoding gives back the properties, for random names and
 * values (UTF-8 made of random code points). */
static size_t rand_utf8(char *out, size_t max_cp)
{
    size_t n = 0, cps = rnd() % (max_cp + 1);
    for (size_t i = 0; i < cps; i++) {
        uint32_t cp;
        switch (rnd() % 4) {
        case 0: cp = 0x20 + (uint32_t)(rnd() % 0x5f); break;
        case 1: cp = 0x80 + (uint32_t)(rnd() % 0x780); break;
        case 2: cp = 0xe000 + (uint32_t)(rnd() % 0x1000); break;
        default: cp = 0x10000 + (uint32_t)(rnd() % 0x1000); break;
        }
        if (cp < 0x80) {
            out[n++] = (char)cp;
        } else if (cp < 0x800) {
            out[n++] = (char)(0xc0 | cp >> 6);
            out[n++] = (char)(0x80 | (cp & 63));
        } else if (cp < 0x10000) {
            out[n++] = (char)(0xe0 | cp >> 12);
            out[n++] = (char)(0x80 | ((cp >> 6) & 63));
            out[n++] = (char)(0x80 | (cp & 63));
        } else {
            out[n++] = (char)(0xf0 | cp >> 18);
            out[n++] = (char)(0x80 | ((cp >> 12) & 63));
            out[n++] = (char)(0x80 | ((cp >> 6) & 63));
            out[n++] = (char)(0x80 | (cp & 63));
        }
    }
    return n;
}

Test(azure_bag, random_encode_decode_round_trip)
{
    long iters = scaled(3000);
    for (long it = 0; it < iters; it++) {
        char names[6][64], values[6][64];
        ciot__azure_prop in[6];
        size_t np = rnd() % 6;
        for (size_t i = 0; i < np; i++) {
            size_t nl;
            do {
                nl = rand_utf8(names[i], 12);
            } while (nl == 0 || (nl >= 2 && names[i][0] == '$' && names[i][1] == '.'));
            size_t vl = rand_utf8(values[i], 12);
            in[i] = (ciot__azure_prop){{names[i], nl}, {values[i], vl}, rnd() % 4 != 0};
            if (!in[i].has_value)
                in[i].value.len = 0;
        }
        char topic[2048];
        size_t tl;
        cr_assert_eq(ciot__azure_telemetry_topic(topic, sizeof topic, &tl, "dev", 3, NULL, 0, NULL, in, np), 0);
        /* the bag uses only unreserved bytes, '%XX' escapes, '=' and '&' */
        const char *bag = topic + strlen("devices/dev/messages/events/");
        size_t bl = tl - (size_t)(bag - topic);
        for (size_t i = 0; i < bl; i++) {
            unsigned char c = (unsigned char)bag[i];
            cr_assert(ciot__azure_url_unreserved(c) || c == '%' || c == '=' || c == '&' ||
                          ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F')),
                      "byte %02x", c);
        }
        char buf[2048];
        ciot__azure_prop out[6];
        size_t used, n;
        cr_assert_eq(ciot__azure_bag_decode(buf, sizeof buf, &used, out, 6, &n, bag, bl), 0);
        cr_assert_eq(n, np);
        for (size_t i = 0; i < np; i++) {
            cr_assert_eq(out[i].has_value, in[i].has_value);
            cr_assert_eq(out[i].name.len, in[i].name.len);
            cr_assert_eq(memcmp(out[i].name.ptr, in[i].name.ptr, in[i].name.len), 0);
            cr_assert_eq(out[i].value.len, in[i].value.len);
            if (in[i].value.len)
                cr_assert_eq(memcmp(out[i].value.ptr, in[i].value.ptr, in[i].value.len), 0);
        }
    }
}

/* ---- connection strings --------------------------------------------------- */

#define CS_DEV "HostName=myhub.azure-devices.net;DeviceId=device1;SharedAccessKey=" K1

static ciot__azure_conn *parse_ok(const char *s)
{
    ciot__azure_conn *c = NULL;
    char msg[CIOT__AZURE_ERRMSG_MAX];
    int rc = ciot__azure_conn_parse(&c, s, strlen(s), msg, sizeof msg);
    cr_assert_eq(rc, 0, "%s: %d %s", s, rc, msg);
    cr_assert_not_null(c);
    return c;
}

Test(azure_conn, protocols_example_parses)
{
    ciot__azure_conn *c = parse_ok(CS_DEV);
    cr_assert_str_eq(c->host, HUB);
    cr_assert_str_eq(c->device_id, "device1");
    cr_assert_null(c->module_id);
    cr_assert_null(c->gateway_host);
    cr_assert_null(c->key_name);
    cr_assert_null(c->sas);
    cr_assert_not(c->x509);
    cr_assert_eq(c->key_len, 32u);
    for (int i = 0; i < 32; i++)
        cr_assert_eq(c->key[i], i);
    /* the parsed key signs the §4.2 vector */
    char tok[512];
    size_t len;
    cr_assert_eq(ciot__azure_sas_sign(tok, sizeof tok, &len, c->host, strlen(c->host), c->device_id,
                                      strlen(c->device_id), NULL, 0, NULL, 0, c->key, c->key_len, 1700000000),
                 0);
    cr_assert_str_eq(tok, "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdevice1"
                          "&sig=gFSfLGMXDOvf906%2FiaX3KwzLLNFHgaFZyCbsGjxtd1Y%3D&se=1700000000");
    ciot__azure_conn_free(c);
    ciot__azure_conn_free(NULL);
}

Test(azure_conn, every_field_in_any_order)
{
    ciot__azure_conn *c = parse_ok("GatewayHostName=edge.local;ModuleId=mod-a;SharedAccessKey=" KP
                                   ";SharedAccessKeyName=device;DeviceId=device1;HostName=" HUB ";");
    cr_assert_str_eq(c->gateway_host, "edge.local");
    cr_assert_str_eq(c->module_id, "mod-a");
    cr_assert_str_eq(c->key_name, "device");
    cr_assert_eq(c->key_len, 32u);
    cr_assert_eq(c->key[0], 0x20);
    ciot__azure_conn_free(c);

    c = parse_ok("HostName=" HUB ";DeviceId=d;x509=true");
    cr_assert(c->x509);
    cr_assert_null(c->key);
    cr_assert_eq(c->key_len, 0u);
    ciot__azure_conn_free(c);

    const char *tok = "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fd&sig=abc%3D&se=1";
    char s[256];
    snprintf(s, sizeof s, "HostName=%s;DeviceId=d;SharedAccessSignature=%s", HUB, tok);
    c = parse_ok(s);
    cr_assert_str_eq(c->sas, tok); /* '=' inside the value: split at the first '=' */
    ciot__azure_conn_free(c);
}

static void parse_err(const char *s, size_t len, int want, const char *msg_part)
{
    ciot__azure_conn *c = (ciot__azure_conn *)0x1;
    char msg[CIOT__AZURE_ERRMSG_MAX];
    memset(msg, 'x', sizeof msg);
    int rc = ciot__azure_conn_parse(&c, s, len, msg, sizeof msg);
    cr_assert_eq(rc, want, "%.*s: rc %d (%s), want %d", (int)len, s, rc, ciot_err_name(rc), want);
    cr_assert_null(c);
    cr_assert(memchr(msg, '\0', sizeof msg) != NULL);
    cr_assert(strlen(msg) > 0);
    cr_assert(strstr(msg, msg_part) != NULL, "message '%s' lacks '%s'", msg, msg_part);
    /* no secret ever appears in a message */
    cr_assert_null(strstr(msg, "AAECAwQF"));
    cr_assert_null(strstr(msg, "ICEiIyQl"));
    cr_assert_null(strstr(msg, "bGliY2xv"));
    cr_assert_null(strstr(msg, "sig="));
}

#define PERR(s, want, part) parse_err(s, strlen(s), want, part)

Test(azure_conn, every_error_has_its_code_and_message)
{
    PERR(CS_DEV ";Foo=bar", CIOT_EUNKNOWN_OPTION, "unknown field 'Foo'");
    PERR("hostname=" HUB ";DeviceId=d;SharedAccessKey=" K1, CIOT_EUNKNOWN_OPTION, "'hostname'");
    PERR("HostName=" HUB ";DeviceId=d;SharedAccesKey=" K1, CIOT_EUNKNOWN_OPTION, "SharedAccesKey");
    PERR(CS_DEV ";DeviceId=other", CIOT_EEXIST, "DeviceId given twice");
    PERR(CS_DEV ";SharedAccessKey=" KP, CIOT_EEXIST, "SharedAccessKey given twice");
    PERR("DeviceId=d;SharedAccessKey=" K1, CIOT_ENOTFOUND, "HostName is missing");
    PERR("HostName=" HUB ";SharedAccessKey=" K1, CIOT_ENOTFOUND, "DeviceId is missing");
    PERR("HostName=" HUB ";DeviceId=d", CIOT_ENOTFOUND, "no credential");
    PERR("HostName=" HUB ";DeviceId=d;ModuleId=m;GatewayHostName=g", CIOT_ENOTFOUND, "no credential");
    PERR("HostName=" HUB ";DeviceId=d;SharedAccessKeyName=p", CIOT_ENOTFOUND, "without SharedAccessKey");
    PERR("HostName=;DeviceId=d;SharedAccessKey=" K1, CIOT_EINVAL, "HostName has an empty value");
    PERR(CS_DEV ";ModuleId=", CIOT_EINVAL, "ModuleId has an empty value");
    PERR("HostName=" HUB ";DeviceId=d;SharedAccessKey=", CIOT_EINVAL, "SharedAccessKey has an empty value");
    PERR(CS_DEV ";x509=true", CIOT_ETYPE, "x509=true cannot go with");
    PERR("HostName=" HUB ";DeviceId=d;x509=true;SharedAccessSignature=SharedAccessSignature sr=a", CIOT_ETYPE,
         "x509=true");
    PERR("HostName=" HUB ";DeviceId=d;x509=true;SharedAccessKeyName=p", CIOT_ETYPE, "x509=true");
    PERR(CS_DEV ";SharedAccessSignature=SharedAccessSignature sr=a", CIOT_ETYPE, "not both");
    PERR("HostName=" HUB ";DeviceId=d;SharedAccessKeyName=p;SharedAccessSignature=SharedAccessSignature sr=a",
         CIOT_ETYPE, "SharedAccessKeyName goes with SharedAccessKey");
    PERR("HostName=" HUB ";DeviceId=d;SharedAccessKey=AAECAwQ", CIOT_ECORRUPT, "not base64");
    PERR("HostName=" HUB ";DeviceId=d;SharedAccessKey=" K1 " ", CIOT_ECORRUPT, "not base64");
    PERR("HostName=" HUB ";DeviceId=d;SharedAccessKey=AAF=", CIOT_ECORRUPT, "not base64");
    PERR("HostName=" HUB ";DeviceId=d;x509=false", CIOT_ERANGE, "only the value 'true'");
    PERR("HostName=" HUB ";DeviceId=d;x509=True", CIOT_ERANGE, "only the value 'true'");
    PERR("HostName=" HUB ";DeviceId=d;UseProvisioning=true", CIOT_ENOTBUILT, "Provisioning");
    PERR("HostName=" HUB ";DeviceId=d;UseProvisioning=yes", CIOT_ERANGE, "UseProvisioning");
    PERR("HostName=" HUB ";DeviceId", CIOT_EINVAL, "without '='");
    PERR("HostName=" HUB ";=d", CIOT_EINVAL, "without a name");
    PERR("HostName=" HUB ";;DeviceId=d;x509=true", CIOT_EINVAL, "empty field");
    PERR(";HostName=" HUB ";DeviceId=d;x509=true", CIOT_EINVAL, "empty field");
    PERR(CS_DEV ";;", CIOT_EINVAL, "empty field");
    PERR("", CIOT_ENOTFOUND, "HostName is missing");
    PERR("HostName=my hub;DeviceId=d;x509=true", CIOT_EINVAL, "HostName is not a host name");
    PERR("HostName=" HUB ";DeviceId=d;x509=true;GatewayHostName=a/b", CIOT_EINVAL, "GatewayHostName");
    PERR("HostName=" HUB ";DeviceId=d/e;x509=true", CIOT_EINVAL, "DeviceId has a character");
    PERR("HostName=" HUB ";DeviceId=d;ModuleId=m#;x509=true", CIOT_EINVAL, "ModuleId has a character");
    PERR("HostName=" HUB ";DeviceId=d;SharedAccessKeyName=a\tb;SharedAccessKey=" K1, CIOT_EINVAL,
         "SharedAccessKeyName");
    PERR("HostName=" HUB ";DeviceId=d;SharedAccessSignature=sr=abc", CIOT_EINVAL, "does not start with");
    PERR("HostName=" HUB ";DeviceId=d\xff;x509=true", CIOT_EINVAL, "not UTF-8");
    parse_err("HostName=" HUB ";DeviceId=d\0;x509=true", sizeof("HostName=" HUB ";DeviceId=d\0;x509=true") - 1,
              CIOT_EINVAL, "NUL");
    static char big[CIOT__AZURE_CONN_MAX + 2];
    memset(big, 'a', sizeof big - 1);
    PERR(big, CIOT_ERANGE, "longer than");
    char longkey[1200];
    int n = snprintf(longkey, sizeof longkey, "HostName=%s;DeviceId=d;SharedAccessKey=", HUB);
    memset(longkey + n, 'A', 1028);
    longkey[n + 1028] = '\0';
    PERR(longkey, CIOT_ERANGE, "SharedAccessKey longer than");
    /* messages never carry a long or binary field name verbatim */
    PERR("HostName=" HUB ";\x01\x02=x", CIOT_EUNKNOWN_OPTION, "'?" "?'");
    PERR("HostName=" HUB ";AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=x", CIOT_EUNKNOWN_OPTION, "...'");
    /* NULL arguments */
    ciot__azure_conn *c;
    cr_assert_eq(ciot__azure_conn_parse(NULL, "a", 1, NULL, 0), CIOT_EINVAL);
    cr_assert_eq(ciot__azure_conn_parse(&c, NULL, 1, NULL, 0), CIOT_EINVAL);
    /* errmsg may be NULL */
    cr_assert_eq(ciot__azure_conn_parse(&c, "x=1", 3, NULL, 0), CIOT_EUNKNOWN_OPTION);
    /* a short errmsg buffer is truncated, still terminated */
    char tiny[8];
    cr_assert_eq(ciot__azure_conn_parse(&c, "x=1", 3, tiny, sizeof tiny), CIOT_EUNKNOWN_OPTION);
    cr_assert_eq(strlen(tiny), 7u);
}

/* The key lives in one block, entirely zero when it reaches free(). */
typedef struct wipe_watch {
    int frees_checked;
    int dirty_frees;
} wipe_watch;

static void *ww_malloc(size_t n, void *ctx)
{
    (void)ctx;
    size_t *p = malloc(n + sizeof(size_t) * 2);
    if (!p)
        return NULL;
    p[0] = n;
    return p + 2;
}

static void *ww_realloc(void *ptr, size_t n, void *ctx)
{
    (void)ctx;
    size_t *p = ptr ? (size_t *)ptr - 2 : NULL;
    p = realloc(p, n + sizeof(size_t) * 2);
    if (!p)
        return NULL;
    p[0] = n;
    return p + 2;
}

static void ww_free(void *ptr, void *ctx)
{
    wipe_watch *w = ctx;
    if (!ptr)
        return;
    size_t *p = (size_t *)ptr - 2;
    const unsigned char *b = ptr;
    bool zero = true;
    for (size_t i = 0; i < p[0]; i++)
        zero = zero && b[i] == 0;
    w->frees_checked++;
    if (!zero)
        w->dirty_frees++;
    free(p);
}

Test(azure_conn, key_block_is_wiped_before_free)
{
    static wipe_watch w;
    ciot_allocator a = {ww_malloc, ww_realloc, ww_free, &w};
    cr_assert_eq(ciot_set_allocator(&a), 0);
    const char *s = "HostName=" HUB ";DeviceId=device1;ModuleId=m;SharedAccessKeyName=p;SharedAccessKey=" K2;
    ciot__azure_conn *c = NULL;
    cr_assert_eq(ciot__azure_conn_parse(&c, s, strlen(s), NULL, 0), 0);
    cr_assert_eq(c->key_len, strlen(K2_TEXT));
    cr_assert_eq(memcmp(c->key, K2_TEXT, c->key_len), 0);
    /* the block really held the key and the strings before the free */
    const unsigned char *blk = (const unsigned char *)c;
    size_t size = c->block_size_;
    bool found = false;
    for (size_t i = 0; i + c->key_len <= size; i++)
        found = found || memcmp(blk + i, K2_TEXT, c->key_len) == 0;
    cr_assert(found);
    ciot__azure_conn_free(c);
    cr_assert_eq(w.frees_checked, 1);
    cr_assert_eq(w.dirty_frees, 0);

    /* SharedAccessSignature tokens are secrets too */
    const char *s2 = "HostName=" HUB ";DeviceId=d;SharedAccessSignature=SharedAccessSignature sr=x&sig=secret";
    cr_assert_eq(ciot__azure_conn_parse(&c, s2, strlen(s2), NULL, 0), 0);
    ciot__azure_conn_free(c);
    cr_assert_eq(w.frees_checked, 2);
    cr_assert_eq(w.dirty_frees, 0);
}

/* Allocation failure is reported, nothing leaks (valgrind/ASan). */
static void *fail_malloc(size_t n, void *ctx)
{
    (void)n;
    (void)ctx;
    return NULL;
}
static void *fail_realloc(void *p, size_t n, void *ctx)
{
    (void)p;
    (void)n;
    (void)ctx;
    return NULL;
}
static void plain_free(void *p, void *ctx)
{
    (void)ctx;
    free(p);
}

Test(azure_conn, out_of_memory)
{
    ciot_allocator a = {fail_malloc, fail_realloc, plain_free, NULL};
    cr_assert_eq(ciot_set_allocator(&a), 0);
    ciot__azure_conn *c = (ciot__azure_conn *)0x1;
    char msg[CIOT__AZURE_ERRMSG_MAX];
    cr_assert_eq(ciot__azure_conn_parse(&c, CS_DEV, strlen(CS_DEV), msg, sizeof msg), CIOT_ENOMEM);
    cr_assert_null(c);
    cr_assert_str_eq(msg, "out of memory");
}
