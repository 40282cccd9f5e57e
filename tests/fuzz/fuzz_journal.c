/* Journal replay on arbitrary file contents: never a crash, overread or leak;
 * what survives the cut replays identically a second time, and the journal
 * stays writable. The input is the file; when it starts with 'H' that byte is
 * replaced by a valid file header, so the fuzzer reaches the records quickly. */
#include "client/journal.h"
#include "core/crc32c.h"
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];
static char path[128];

static void cleanup(void)
{
    char p[160];
    unlink(path);
    snprintf(p, sizeof p, "%s.lock", path);
    unlink(p);
    snprintf(p, sizeof p, "%s.tmp", path);
    unlink(p);
    rmdir(dir);
}

struct sum {
    uint64_t n, ids, crc;
};

static int collect(uint64_t id, const char *topic, size_t tl, const void *payload, size_t pl,
                   int qos, bool retain, void *ud)
{
    struct sum *s = ud;
    if (tl == 0 || tl > 65535 || qos < 0 || qos > 2)
        abort();
    s->n++;
    s->ids = s->ids * 31 + id;
    s->crc = ciot__crc32c((uint32_t)s->crc, topic, tl);
    s->crc = ciot__crc32c((uint32_t)s->crc, payload, pl) + (retain ? 1u : 0u);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0]) {
        strcpy(dir, "/tmp/ciot-fuzz-journal-XXXXXX");
        if (!mkdtemp(dir))
            abort();
        snprintf(path, sizeof path, "%s/%s", dir, CIOT__JOURNAL_FILE_NAME);
        atexit(cleanup);
    }
    if (size > (1u << 20))
        return 0;
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (size && data[0] == 'H') {
        unsigned char h[16] = {'C', 'I', 'O', 'T', 'J', 'R', 'N', 'L', 1, 0, 0, 0};
        uint32_t c = ciot__crc32c(0, h, 12);
        for (int i = 0; i < 4; i++)
            h[12 + i] = (unsigned char)(c >> (8 * i));
        fwrite(h, 1, 16, f);
        data++, size--;
    }
    if (size && fwrite(data, 1, size, f) != size)
        abort();
    fclose(f);

    ciot__journal_opts o = {.max_bytes = 4u << 20, .sync = CIOT__JOURNAL_SYNC_NONE,
                            .compact_min_bytes = 256};
    ciot__journal *j;
    if (ciot__journal_new(&j, &o))
        abort();
    struct sum a = {0}, b = {0};
    ciot__journal_report rep;
    int rc = ciot__journal_open(j, dir, collect, &a, &rep);
    if (rc) {
        /* Only a foreign header may refuse the file. */
        if (rc != CIOT_ECORRUPT && rc != CIOT_EVERSION)
            abort();
        ciot__journal_free(j);
        return 0;
    }
    if (rep.live != a.n)
        abort();
    uint64_t id = rep.next_id;
    if (id != UINT64_MAX && ciot__journal_add(j, id, "f/t", 3, "x", 1, 1, false) != 0)
        abort();
    if (id != UINT64_MAX && ciot__journal_ack(j, id) != 0)
        abort();
    ciot__journal_free(j);
    /* Reopen: nothing more is cut and the same messages come back. */
    if (ciot__journal_new(&j, &o))
        abort();
    if (ciot__journal_open(j, dir, collect, &b, &rep) != 0 || rep.bytes_cut != 0)
        abort();
    if (a.n != b.n || a.ids != b.ids || a.crc != b.crc)
        abort();
    ciot__journal_free(j);
    return 0;
}
