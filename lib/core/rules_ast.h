/*
 * The compiled form of an AWS IoT SQL rule, shared by the parser
 * (rules_sql.c) and the evaluator (rules_eval.c). Internal.
 */
#ifndef CIOT_CORE_RULES_AST_H
#define CIOT_CORE_RULES_AST_H

#include "core/rules_sql.h"

#include <string.h>

enum rnode_kind {
    N_INT, N_DEC, N_STR, N_BOOL, N_NULL, N_PATH, N_SEG_KEY, N_SEG_IDX, N_CALL, N_NEG, N_NOT,
    N_BIN, N_CASE, N_WHEN, N_ELSE, N_OBJ, N_MEMBER, N_ARR, N_ITEM, N_STAR
};

enum rnode_op {
    OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MOD, OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_AND, OP_OR
};

enum rfunc {
    F_TOPIC, F_TIMESTAMP, F_CLIENTID, F_ABS, F_LOWER, F_UPPER, F_TRIM, F_CONCAT, F_LENGTH,
    F_SUBSTRING, F_STARTSWITH, F_ENDSWITH, F_INDEXOF, F_GET, F_ISNULL, F_ISUNDEFINED, F_CAST,
    F_ROUND, F_FLOOR, F_CEIL, F_TRUNC, F_MOD, F_POWER, F_SQRT, F_SIGN, F_NEWUUID
};

enum rcast { C_INT, C_DECIMAL, C_DOUBLE, C_STRING, C_BOOL, C_BOOLEAN };

typedef struct rnode {
    uint8_t kind;
    uint8_t op;      /* N_BIN: rnode_op; N_CALL: rfunc */
    uint16_t height; /* of the subtree */
    uint32_t pos;    /* byte offset in the SQL text */
    int32_t kid;     /* first child, -1 if none */
    int32_t next;    /* next sibling, -1 if none */
    int32_t nkids;
    int32_t slot;    /* N_PATH: index in roots */
    int64_t i;       /* N_INT, N_BOOL, N_SEG_IDX, cast type */
    double d;        /* N_DEC */
    const char *s;   /* N_STR (unescaped), N_PATH root name, N_SEG_KEY */
    size_t n;
    const char *key; /* N_ITEM / N_MEMBER output key; N_PATH last name */
    size_t key_len;
} rnode;

enum {
    IF_LATER = 1, /* a later item may replace this one's key: `*`, or an item with the same key
                   * (for a `*` item: any later item) */
    IF_PLAIN = 2  /* the output key needs no escaping (ciot__json_key_plain) */
};

typedef struct rname {
    const char *s;
    size_t n;
    uint64_t wa, wb; /* rules_key_words() of the name */
} rname;

/* A name's first and last 8 bytes (zero-padded when shorter): with the
 * length they decide equality of names up to 16 bytes without memcmp. */
static inline void rules_key_words(const char *s, size_t n, uint64_t *wa, uint64_t *wb)
{
    if (n >= 8) {
        memcpy(wa, s, 8);
        memcpy(wb, s + n - 8, 8);
        return;
    }
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++)
        x |= (uint64_t)(unsigned char)s[i] << (8 * i);
    *wa = x;
    *wb = 0;
}

struct ciot__rule {
    rnode *nodes;
    int32_t nnodes;
    int32_t where; /* -1: no WHERE */
    bool value;    /* SELECT VALUE */
    int32_t nitems;
    int32_t items[CIOT__RULES_MAX_ITEMS];
    int32_t nroots;
    rname roots[CIOT__RULES_MAX_ROOTS];
    bool star; /* a `*` item */
    /* per SELECT item, computed once after parsing: */
    uint8_t item_flags[CIOT__RULES_MAX_ITEMS];
    const char *filter;
    size_t filter_len;
};

#endif /* CIOT_CORE_RULES_AST_H */
