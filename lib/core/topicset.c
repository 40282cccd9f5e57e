/*
 * A set of topic filters as a trie over levels.
 *
 * Each node is one filter level. A node has:
 *  - exact children, keyed by their level bytes: a short array scanned
 *    linearly while there are few, an open-addressing hash table (linear
 *    probing, backward-shift deletion) once there are more than KIDS_LINEAR;
 *  - one `+` child;
 *  - the values of the filters that end at this node (`v`), and of the
 *    filters that end with `/#` right below it (`hv`; at the root: `#`).
 * A value list holds the value itself while it has one entry and an array
 * otherwise, so the common single-subscriber filter costs no extra block.
 *
 * Lookup walks the name level by level, exact child first, then `+`, with
 * parent pointers instead of a stack (no allocation, no recursion: a filter
 * may have 32,768 levels). Filters are validated once at add time and the
 * name once per lookup, so the walk itself does no validation.
 *
 * MQTT 5 shared filters `$share/{name}/{filter}` live in separate tries, one
 * per share name (children of `shares`), so `$share/a/x` and `$share/b/x` stay
 * distinct pairs while both match `x`.
 */
#include "core/topic_internal.h"
#include "internal.h"

#include <string.h>

typedef unsigned char uchar;

enum { KIND_EXACT, KIND_PLUS, KIND_TOP };

#define KIDS_LINEAR 8u

typedef struct tnode tnode;
struct tnode {
    tnode *parent;
    tnode **kids; /* KCAP slots: linear array (KCAP <= KIDS_LINEAR) or hash table */
    tnode *plus;
    void *v;      /* one value, or an array when nv >= 2 */
    void *hv;     /* same for "<this>/#" */
    uint32_t nv, nhv;
    uint32_t hash;
    uint32_t nkids;
    uint16_t seglen;
    uint8_t kind;
    uint8_t klog; /* KCAP(n): 0 or 1 << klog */
    char seg[];
};

#define KCAP(n) ((n)->klog ? (uint32_t)1 << (n)->klog : 0u)

static void set_kcap(tnode *n, uint32_t cap)
{
    uint8_t l = 0;
    while (cap > 1) {
        cap >>= 1;
        l++;
    }
    n->klog = l;
}

/*
 * Blocks of up to SLAB_MAX bytes (nodes, child arrays, value lists) are cut
 * from chunks the set allocates (an eighth of what the set holds, from
 * SLAB_FIRST up to SLAB_LAST bytes),
 * in 8-byte size classes with one free list each, so a filter costs no
 * allocator header per block. The chunks go back to the allocator when the
 * last such block is freed, and with the set. Larger blocks come from the
 * allocator directly.
 */
#define SLAB_MAX 256u
#define SLAB_FIRST 1024u
#define SLAB_LAST 65536u
#define SLAB_HDR 16u /* chunk header: next chunk, chunk size */

struct ciot_topicset {
    tnode *root;
    tnode *shares; /* exact children = share names, each the root of a trie */
    size_t count;
    size_t mem;
    unsigned flags;
    void *freel[SLAB_MAX / 8]; /* class c: blocks of 8 * (c + 1) bytes */
    unsigned char *chunks;
    unsigned char *bump, *bump_end;
    size_t slab_live; /* blocks handed out from the chunks */
    size_t next_chunk;
};

/* ---------------------------------------------------------------- helpers */

static uint32_t seg_hash(const uchar *p, size_t n)
{
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    if (n) {
        uint64_t w = 0;
        for (size_t i = 0; i < n; i++)
            w |= (uint64_t)p[i] << (8 * i);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 29;
    }
    /* a full final mix: tables index by the low bits, and the rounds
     * above leave them poorly spread for short, similar segments */
    h ^= h >> 33;
    h *= 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 33;
    return (uint32_t)h;
}

static void *heap_alloc(ciot_topicset *s, size_t n)
{
    void *p = ciot__malloc(n);
    if (p)
        s->mem += n;
    return p;
}

static void heap_free(ciot_topicset *s, void *p, size_t n)
{
    if (p) {
        s->mem -= n;
        ciot__free(p);
    }
}

static void slab_push(ciot_topicset *s, void *p, size_t size)
{
    size_t c = size / 8 - 1;
    memcpy(p, &s->freel[c], sizeof(void *));
    s->freel[c] = p;
}

/* Gives every chunk back (no block from them is in use). */
static void slab_release(ciot_topicset *s)
{
    unsigned char *ch = s->chunks;
    while (ch) {
        unsigned char *next;
        size_t size;
        memcpy(&next, ch, sizeof next);
        memcpy(&size, ch + sizeof next, sizeof size);
        heap_free(s, ch, size);
        ch = next;
    }
    s->chunks = NULL;
    s->bump = s->bump_end = NULL;
    memset(s->freel, 0, sizeof s->freel);
    s->next_chunk = SLAB_FIRST;
}

static void *set_alloc(ciot_topicset *s, size_t n)
{
    if (n > SLAB_MAX)
        return heap_alloc(s, n);
    size_t size = (n + 7) & ~(size_t)7;
    void *p = s->freel[size / 8 - 1];
    if (p) {
        memcpy(&s->freel[size / 8 - 1], p, sizeof(void *));
    } else {
        if ((size_t)(s->bump_end - s->bump) < size) {
            size_t rest = (size_t)(s->bump_end - s->bump);
            unsigned char *ch = heap_alloc(s, s->next_chunk);
            if (!ch)
                return NULL;
            if (rest >= 8) /* the end of the old chunk stays usable */
                slab_push(s, s->bump, rest);
            memcpy(ch, &s->chunks, sizeof s->chunks);
            memcpy(ch + sizeof s->chunks, &s->next_chunk, sizeof s->next_chunk);
            s->chunks = ch;
            s->bump = ch + SLAB_HDR;
            s->bump_end = ch + s->next_chunk;
            /* grow with the set, by an eighth at a time: little unused room */
            size_t next = (s->mem / 8 + SLAB_FIRST - 1) / SLAB_FIRST * SLAB_FIRST;
            s->next_chunk = next < SLAB_FIRST ? SLAB_FIRST : next > SLAB_LAST ? SLAB_LAST : next;
        }
        p = s->bump;
        s->bump += size;
    }
    s->slab_live++;
    return p;
}

static void set_free(ciot_topicset *s, void *p, size_t n)
{
    if (!p)
        return;
    if (n > SLAB_MAX) {
        heap_free(s, p, n);
        return;
    }
    slab_push(s, p, (n + 7) & ~(size_t)7);
    if (--s->slab_live == 0)
        slab_release(s);
}

static size_t node_size(size_t seglen)
{
    return offsetof(tnode, seg) + seglen;
}

static tnode *node_new(ciot_topicset *s, tnode *parent, int kind, const uchar *seg,
                       size_t len, uint32_t h)
{
    tnode *n = kind == KIND_TOP ? heap_alloc(s, node_size(len)) : set_alloc(s, node_size(len));
    if (!n)
        return NULL;
    memset(n, 0, offsetof(tnode, seg));
    n->parent = parent;
    n->kind = (uint8_t)kind;
    n->hash = h;
    n->seglen = (uint16_t)len;
    if (len)
        memcpy(n->seg, seg, len);
    return n;
}

/*
 * Value lists: one value is stored in the slot itself; two or more live in a
 * block whose first element holds its capacity (as a uintptr_t), values after.
 */
static size_t vblock_cap(void *const *slot, uint32_t n)
{
    return n >= 2 ? (size_t)(uintptr_t)((void *const *)*slot)[0] : 0;
}

static void *const *vlist_c(void *const *slot, uint32_t n)
{
    return n <= 1 ? slot : (void *const *)*slot + 1;
}

static void **vlist(void **slot, uint32_t n)
{
    return n <= 1 ? slot : (void **)*slot + 1;
}

static bool vfind(void **slot, uint32_t n, void *value, uint32_t *at)
{
    void **a = vlist(slot, n);
    for (uint32_t i = 0; i < n; i++) {
        if (a[i] == value) {
            *at = i;
            return true;
        }
    }
    return false;
}

static int vadd(ciot_topicset *s, void **slot, uint32_t *n, void *value)
{
    uint32_t old = *n;
    if (old == UINT32_MAX - 1)
        return CIOT_ENOMEM;
    if (old == 0) {
        *slot = value;
    } else if (old == 1 || old == vblock_cap(slot, old)) {
        size_t cap = old == 1 ? 2 : (size_t)old * 2;
        void **b = set_alloc(s, (cap + 1) * sizeof(void *));
        if (!b)
            return CIOT_ENOMEM;
        b[0] = (void *)(uintptr_t)cap;
        memcpy(b + 1, vlist(slot, old), old * sizeof(void *));
        if (old >= 2)
            set_free(s, *slot, (vblock_cap(slot, old) + 1) * sizeof(void *));
        b[1 + old] = value;
        *slot = b;
    } else {
        vlist(slot, old)[old] = value;
    }
    *n = old + 1;
    return 0;
}

/* Removes entry at; never fails (blocks shrink only back to the inline form). */
static void vremove(ciot_topicset *s, void **slot, uint32_t *n, uint32_t at)
{
    uint32_t old = *n;
    void **a = vlist(slot, old);
    a[at] = a[old - 1];
    if (old == 2) {
        void *only = a[0];
        set_free(s, *slot, (vblock_cap(slot, old) + 1) * sizeof(void *));
        *slot = only;
    } else if (old == 1) {
        *slot = NULL;
    }
    *n = old - 1;
}

/* ------------------------------------------------------------- children */

static bool seg_eq(const tnode *c, const uchar *seg, size_t len, uint32_t h)
{
    return c->hash == h && c->seglen == len && memcmp(c->seg, seg, len) == 0;
}

static tnode *kid_find(const tnode *n, const uchar *seg, size_t len, uint32_t h)
{
    if (KCAP(n) <= KIDS_LINEAR) {
        for (uint32_t i = 0; i < n->nkids; i++)
            if (seg_eq(n->kids[i], seg, len, h))
                return n->kids[i];
        return NULL;
    }
    uint32_t mask = KCAP(n) - 1;
    for (uint32_t i = h & mask;; i = (i + 1) & mask) {
        tnode *c = n->kids[i];
        if (!c)
            return NULL;
        if (seg_eq(c, seg, len, h))
            return c;
    }
}

static void table_put(tnode **tab, uint32_t cap, tnode *c)
{
    uint32_t mask = cap - 1;
    uint32_t i = c->hash & mask;
    while (tab[i])
        i = (i + 1) & mask;
    tab[i] = c;
}

static int kid_insert(ciot_topicset *s, tnode *n, tnode *c)
{
    uint32_t need = n->nkids + 1;
    if (KCAP(n) <= KIDS_LINEAR && need <= KIDS_LINEAR) {
        if (need > KCAP(n)) {
            uint32_t cap = KCAP(n) ? KCAP(n) * 2 : 2;
            tnode **a = set_alloc(s, cap * sizeof(tnode *));
            if (!a)
                return CIOT_ENOMEM;
            if (n->nkids)
                memcpy(a, n->kids, n->nkids * sizeof(tnode *));
            set_free(s, n->kids, KCAP(n) * sizeof(tnode *));
            n->kids = a;
            set_kcap(n, cap);
        }
        n->kids[n->nkids++] = c;
        return 0;
    }
    if (KCAP(n) <= KIDS_LINEAR || (uint64_t)need * 4 > (uint64_t)KCAP(n) * 3) {
        uint32_t cap = KCAP(n) <= KIDS_LINEAR ? 32 : KCAP(n) * 2;
        if (cap == 0)
            return CIOT_ENOMEM;
        tnode **t = set_alloc(s, (size_t)cap * sizeof(tnode *));
        if (!t)
            return CIOT_ENOMEM;
        memset(t, 0, (size_t)cap * sizeof(tnode *));
        if (KCAP(n) <= KIDS_LINEAR) {
            for (uint32_t i = 0; i < n->nkids; i++)
                table_put(t, cap, n->kids[i]);
        } else {
            for (uint32_t i = 0; i < KCAP(n); i++)
                if (n->kids[i])
                    table_put(t, cap, n->kids[i]);
        }
        set_free(s, n->kids, (size_t)KCAP(n) * sizeof(tnode *));
        n->kids = t;
        set_kcap(n, cap);
    }
    table_put(n->kids, KCAP(n), c);
    n->nkids++;
    return 0;
}

static void kid_delete(ciot_topicset *s, tnode *n, const tnode *c)
{
    if (n->nkids == 1) {
        /* the last child: drop the array (or table) too */
        set_free(s, n->kids, (size_t)KCAP(n) * sizeof(tnode *));
        n->kids = NULL;
        n->klog = 0;
        n->nkids = 0;
        return;
    }
    if (KCAP(n) <= KIDS_LINEAR) {
        for (uint32_t i = 0; i < n->nkids; i++) {
            if (n->kids[i] == c) {
                n->kids[i] = n->kids[--n->nkids];
                return;
            }
        }
        return;
    }
    uint32_t mask = KCAP(n) - 1;
    uint32_t i = c->hash & mask;
    while (n->kids[i] != c)
        i = (i + 1) & mask;
    n->kids[i] = NULL;
    /* backward-shift deletion keeps every probe chain unbroken */
    for (uint32_t j = (i + 1) & mask; n->kids[j]; j = (j + 1) & mask) {
        uint32_t home = n->kids[j]->hash & mask;
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            n->kids[i] = n->kids[j];
            n->kids[j] = NULL;
            i = j;
        }
    }
    n->nkids--;
}

/* Frees one node's own blocks (not its children). */
static void node_release(ciot_topicset *s, tnode *n)
{
    if (n->nv >= 2)
        set_free(s, n->v, (vblock_cap(&n->v, n->nv) + 1) * sizeof(void *));
    if (n->nhv >= 2)
        set_free(s, n->hv, (vblock_cap(&n->hv, n->nhv) + 1) * sizeof(void *));
    set_free(s, n->kids, (size_t)KCAP(n) * sizeof(tnode *));
    if (n->kind == KIND_TOP)
        heap_free(s, n, node_size(n->seglen));
    else
        set_free(s, n, node_size(n->seglen));
}

static bool node_empty(const tnode *n)
{
    return n->nv == 0 && n->nhv == 0 && n->nkids == 0 && !n->plus;
}

/* Removes empty nodes from n upwards, stopping at a top node. */
static void prune(ciot_topicset *s, tnode *n)
{
    while (n->kind != KIND_TOP && node_empty(n)) {
        tnode *p = n->parent;
        if (n->kind == KIND_PLUS)
            p->plus = NULL;
        else
            kid_delete(s, p, n);
        node_release(s, n);
        n = p;
    }
}

/* Frees a whole subtree without recursion (depth may be 32,768). */
static void free_tree(ciot_topicset *s, tnode *top)
{
    tnode *n = top;
    while (n) {
        if (n->plus) {
            tnode *c = n->plus;
            n->plus = NULL;
            n = c;
            continue;
        }
        if (n->nkids) {
            tnode *c = NULL;
            if (KCAP(n) <= KIDS_LINEAR) {
                c = n->kids[--n->nkids];
            } else {
                for (uint32_t i = 0; i < KCAP(n) && !c; i++) {
                    if (n->kids[i]) {
                        c = n->kids[i];
                        n->kids[i] = NULL;
                    }
                }
                n->nkids--;
            }
            n = c;
            continue;
        }
        tnode *p = n == top ? NULL : n->parent;
        node_release(s, n);
        n = p;
    }
}

/* ------------------------------------------------------------------ API */

int ciot_topicset_new_ex(ciot_topicset **out, unsigned flags)
{
    if (!out || (flags & ~CIOT__TOPIC_FLAGS_ALL))
        return CIOT_EINVAL;
    ciot_topicset *s = ciot__malloc(sizeof *s);
    if (!s)
        return CIOT_ENOMEM;
    memset(s, 0, sizeof *s);
    s->flags = flags;
    s->mem = sizeof *s;
    s->next_chunk = SLAB_FIRST;
    s->root = node_new(s, NULL, KIND_TOP, NULL, 0, 0);
    s->shares = node_new(s, NULL, KIND_TOP, NULL, 0, 0);
    if (!s->root || !s->shares) {
        ciot_topicset_free(s);
        return CIOT_ENOMEM;
    }
    *out = s;
    return 0;
}

int ciot_topicset_new(ciot_topicset **out)
{
    return ciot_topicset_new_ex(out, 0);
}

void ciot_topicset_free(ciot_topicset *set)
{
    if (!set)
        return;
    if (set->root)
        free_tree(set, set->root);
    if (set->shares)
        free_tree(set, set->shares);
    slab_release(set);
    ciot__free(set);
}

size_t ciot_topicset_count(const ciot_topicset *set)
{
    return set ? set->count : 0;
}

size_t ciot_topicset_memory(const ciot_topicset *set)
{
    return set ? set->mem : 0;
}

/* Next level of f[i..n): its end (the '/' or n). */
static size_t level_end(const uchar *f, size_t i, size_t n)
{
    const uchar *slash = memchr(f + i, '/', n - i);
    return slash ? (size_t)(slash - f) : n;
}

/*
 * Finds (create=false) or builds (create=true) the node for filter f[0..n)
 * (validated). Returns the node whose v (hash=false) or hv (hash=true) list
 * holds the filter's values; NULL if absent or out of memory (*created_from
 * then names the deepest node that may need pruning).
 */
static tnode *walk_filter(ciot_topicset *s, const uchar *f, size_t n, size_t share_len,
                          bool create, bool *hash, tnode **last)
{
    tnode *node = s->root;
    *hash = false;
    *last = NULL;
    if (share_len) {
        const uchar *name = f + 7;
        size_t len = share_len - 8;
        uint32_t h = seg_hash(name, len);
        tnode *c = kid_find(s->shares, name, len, h);
        if (!c) {
            if (!create)
                return NULL;
            c = node_new(s, s->shares, KIND_EXACT, name, len, h);
            if (!c || kid_insert(s, s->shares, c)) {
                if (c)
                    node_release(s, c);
                return NULL;
            }
        }
        node = c;
        *last = c;
    }
    size_t i = share_len;
    for (;;) {
        size_t e = level_end(f, i, n);
        size_t len = e - i;
        tnode *c;
        if (len == 1 && f[i] == '#') {
            *hash = true;
            return node;
        }
        if (len == 1 && f[i] == '+') {
            c = node->plus;
            if (!c) {
                if (!create)
                    return NULL;
                c = node_new(s, node, KIND_PLUS, NULL, 0, 0);
                if (!c)
                    return NULL;
                node->plus = c;
            }
        } else {
            uint32_t h = seg_hash(f + i, len);
            c = kid_find(node, f + i, len, h);
            if (!c) {
                if (!create)
                    return NULL;
                c = node_new(s, node, KIND_EXACT, f + i, len, h);
                if (!c)
                    return NULL;
                if (kid_insert(s, node, c)) {
                    node_release(s, c);
                    return NULL;
                }
            }
        }
        node = c;
        *last = c;
        if (e == n)
            return node;
        i = e + 1;
    }
}

int ciot_topicset_add(ciot_topicset *set, const char *filter, size_t len, void *value)
{
    if (!set)
        return CIOT_EINVAL;
    const uchar *f = (const uchar *)filter;
    size_t share_len;
    int rc = ciot__topic_filter_validate(f, len, set->flags, &share_len);
    if (rc)
        return rc;
    bool hash;
    tnode *last;
    tnode *node = walk_filter(set, f, len, share_len, true, &hash, &last);
    if (!node) {
        if (last)
            prune(set, last);
        return CIOT_ENOMEM;
    }
    void **slot = hash ? &node->hv : &node->v;
    uint32_t *cnt = hash ? &node->nhv : &node->nv;
    uint32_t at;
    if (vfind(slot, *cnt, value, &at))
        return CIOT_EEXIST;
    rc = vadd(set, slot, cnt, value);
    if (rc) {
        prune(set, node);
        return rc;
    }
    set->count++;
    return 0;
}

int ciot_topicset_remove(ciot_topicset *set, const char *filter, size_t len, void *value)
{
    if (!set)
        return CIOT_EINVAL;
    const uchar *f = (const uchar *)filter;
    size_t share_len;
    int rc = ciot__topic_filter_validate(f, len, set->flags, &share_len);
    if (rc)
        return rc;
    bool hash;
    tnode *last;
    tnode *node = walk_filter(set, f, len, share_len, false, &hash, &last);
    if (!node)
        return CIOT_ENOTFOUND;
    void **slot = hash ? &node->hv : &node->v;
    uint32_t *cnt = hash ? &node->nhv : &node->nv;
    uint32_t at;
    if (!vfind(slot, *cnt, value, &at))
        return CIOT_ENOTFOUND;
    vremove(set, slot, cnt, at);
    set->count--;
    prune(set, node);
    return 0;
}

/* ---------------------------------------------------------------- match */

typedef int (*match_cb)(void *value, void *user_data);

static int report(void *const *slot, uint32_t n, match_cb cb, void *ud)
{
    void *const *a = vlist_c(slot, n);
    for (uint32_t i = 0; i < n; i++) {
        int rc = cb(a[i], ud);
        if (rc)
            return rc;
    }
    return 0;
}

/* Start of the level that ends right before level start p (END = n + 1). */
static size_t prev_level(const uchar *t, size_t n, size_t p)
{
    size_t i = p == n + 1 ? n : p - 1; /* scan t[0..i) backwards for '/' */
    while (i > 0 && t[i - 1] != '/')
        i--;
    return i;
}

/*
 * Reports every value under top matching name t[0..n) (validated). State: a
 * node and p, the start of the name level its children match (n + 1 once the
 * name is used up).
 */
static int walk_name(const tnode *top, const uchar *t, size_t n, bool parent_hash, match_cb cb,
                     void *ud)
{
    const size_t end = n + 1;
    const bool dollar = t[0] == '$';
    const tnode *node = top;
    size_t p = 0, np;
    int rc;

enter:
    if (p == end) {
        if (node->nv && (rc = report(&node->v, node->nv, cb, ud)) != 0)
            return rc;
        if (parent_hash && node->nhv && (rc = report(&node->hv, node->nhv, cb, ud)) != 0)
            return rc;
        goto up;
    }
    {
        bool wild_ok = !(dollar && node == top);
        if (node->nhv && wild_ok && (rc = report(&node->hv, node->nhv, cb, ud)) != 0)
            return rc;
        const uchar *slash = memchr(t + p, '/', n - p);
        size_t q = slash ? (size_t)(slash - t) : n;
        np = slash ? q + 1 : end;
        if (node->nkids) {
            const tnode *c = kid_find(node, t + p, q - p, seg_hash(t + p, q - p));
            if (c) {
                node = c;
                p = np;
                goto enter;
            }
        }
    }
try_plus:
    if (node->plus && !(dollar && node == top)) {
        node = node->plus;
        p = np;
        goto enter;
    }
up:
    if (node == top)
        return 0;
    np = p;
    p = prev_level(t, n, np);
    if (node->kind == KIND_EXACT) {
        node = node->parent;
        goto try_plus;
    }
    node = node->parent;
    goto up;
}

int ciot_topicset_match(const ciot_topicset *set, const char *topic, size_t len,
                        int (*on_match)(void *value, void *user_data), void *user_data)
{
    if (!set || !on_match)
        return CIOT_EINVAL;
    const uchar *t = (const uchar *)topic;
    int rc = ciot__topic_name_validate(t, len, set->flags);
    if (rc)
        return rc;
    bool parent_hash = !(set->flags & CIOT_MATCH_AWS);
    rc = walk_name(set->root, t, len, parent_hash, on_match, user_data);
    if (rc || !set->shares->nkids)
        return rc;
    const tnode *sh = set->shares;
    bool linear = KCAP(sh) <= KIDS_LINEAR;
    uint32_t slots = linear ? sh->nkids : KCAP(sh);
    for (uint32_t i = 0; i < slots; i++) {
        if (sh->kids[i] && (rc = walk_name(sh->kids[i], t, len, parent_hash, on_match, user_data)))
            return rc;
    }
    return 0;
}
