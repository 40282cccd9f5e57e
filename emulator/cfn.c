/*
 * CloudFormation templates -> CreateTopicRule requests (cfn.h).
 *
 * The template is loaded as a libyaml document (node graph with positions);
 * values are evaluated on demand where a property needs them, so an error
 * names the node it comes from. Aliases make the graph a DAG, so every walk
 * is bounded by a depth limit and a work budget (no "billion laughs").
 */
#include "cfn.h"

#include <cloudiot/error.h>

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define CFN_MAX_DEPTH 32
#define CFN_BUDGET 200000
#define CFN_MAX_STRING (1u << 20)

typedef struct sb {
    char *p;
    size_t len, cap;
} sb;

typedef struct cfn {
    yaml_document_t doc;
    const ciot__cfn_options *o;
    const char *region, *account, *stack;
    yaml_node_t *params;    /* the Parameters mapping, or NULL */
    json_t *values;         /* parameter name -> string */
    yaml_node_t *resources; /* the Resources mapping */
    const char *resource;   /* the resource being converted (for messages) */
    char *err;
    size_t errlen;
    int rc;
    unsigned depth;
    unsigned long budget;
} cfn;

/* ------------------------------------------------------------ errors */

static int fail(cfn *c, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(cfn *c, const yaml_node_t *n, const char *fmt, ...)
{
    if (c->rc)
        return c->rc; /* keep the first error */
    c->rc = CIOT_EINVAL;
    if (!c->err || !c->errlen)
        return c->rc;
    size_t off = 0;
    int k;
    if (n)
        k = snprintf(c->err, c->errlen, "%lu:%lu: ", (unsigned long)n->start_mark.line + 1,
                     (unsigned long)n->start_mark.column + 1);
    else
        k = snprintf(c->err, c->errlen, "%s", "");
    if (k > 0)
        off = (size_t)k < c->errlen ? (size_t)k : c->errlen - 1;
    if (c->resource && off < c->errlen) {
        k = snprintf(c->err + off, c->errlen - off, "Resource %s: ", c->resource);
        if (k > 0)
            off += (size_t)k < c->errlen - off ? (size_t)k : c->errlen - off - 1;
    }
    if (off < c->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err + off, c->errlen - off, fmt, ap);
        va_end(ap);
    }
    return c->rc;
}

static int nomem(cfn *c)
{
    if (!c->rc) {
        c->rc = CIOT_ENOMEM;
        if (c->err && c->errlen)
            snprintf(c->err, c->errlen, "out of memory");
    }
    return c->rc;
}

/* ------------------------------------------------------------ strings */

static int sb_add(cfn *c, sb *s, const char *p, size_t n)
{
    if (n > CFN_MAX_STRING || s->len + n > CFN_MAX_STRING)
        return fail(c, NULL, "a string longer than %u bytes", CFN_MAX_STRING);
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 64;
        while (cap < s->len + n + 1)
            cap *= 2;
        char *np = realloc(s->p, cap);
        if (!np)
            return nomem(c);
        s->p = np;
        s->cap = cap;
    }
    memcpy(s->p + s->len, p, n);
    s->len += n;
    s->p[s->len] = '\0';
    return 0;
}

static int sb_adds(cfn *c, sb *s, const char *p)
{
    return sb_add(c, s, p, strlen(p));
}

static void sb_free(sb *s)
{
    free(s->p);
    s->p = NULL;
    s->len = s->cap = 0;
}

/* ------------------------------------------------------------ nodes */

static yaml_node_t *node(cfn *c, int index)
{
    return yaml_document_get_node(&c->doc, index);
}

static bool is_scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE;
}

static bool is_map(const yaml_node_t *n)
{
    return n && n->type == YAML_MAPPING_NODE;
}

static bool is_seq(const yaml_node_t *n)
{
    return n && n->type == YAML_SEQUENCE_NODE;
}

static const char *stext(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

/* A local tag (!Sub, !Ref...), as opposed to the standard ones the loader assigns. */
static bool local_tag(const yaml_node_t *n)
{
    const char *t = (const char *)n->tag;
    return t && t[0] == '!';
}

static bool scalar_is(const yaml_node_t *n, const char *s)
{
    return is_scalar(n) && !local_tag(n) && n->data.scalar.length == strlen(s) &&
           memcmp(stext(n), s, n->data.scalar.length) == 0;
}

static int work(cfn *c, const yaml_node_t *n)
{
    if (c->budget == 0)
        return fail(c, n, "the template takes too much work to evaluate (aliases?)");
    c->budget--;
    return 0;
}

/* A mapping's keys must be plain scalars, unique, and (when @p allowed is
 * given) in @p allowed. */
static int check_keys(cfn *c, yaml_node_t *map, const char *what, const char *const *allowed)
{
    if (!is_map(map))
        return fail(c, map, "%s must be a mapping", what);
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = node(c, p->key);
        if (work(c, k))
            return c->rc;
        if (!is_scalar(k) || local_tag(k))
            return fail(c, k, "%s: keys must be plain strings", what);
        if (strlen(stext(k)) != k->data.scalar.length)
            return fail(c, k, "%s: a key contains a NUL byte", what);
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
            yaml_node_t *k2 = node(c, q->key);
            if (strcmp(stext(k2), stext(k)) == 0)
                return fail(c, k, "%s: duplicate key %s", what, stext(k));
        }
        if (allowed) {
            bool ok = false;
            for (size_t i = 0; allowed[i]; i++)
                ok = ok || strcmp(allowed[i], stext(k)) == 0;
            if (!ok)
                return fail(c, k, "%s: unknown property %s", what, stext(k));
        }
    }
    return 0;
}

/* The value of key @p key in @p map (checked by check_keys), or NULL. */
static yaml_node_t *map_get(cfn *c, yaml_node_t *map, const char *key, yaml_node_t **key_node)
{
    if (!is_map(map))
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = node(c, p->key);
        if (is_scalar(k) && strcmp(stext(k), key) == 0) {
            if (key_node)
                *key_node = k;
            return node(c, p->value);
        }
    }
    return NULL;
}

/* ------------------------------------------------------------ intrinsics */

/* Whether @p n is an intrinsic function: the tag form (!Sub x) or the long
 * form ({"Fn::Sub": x}, {"Ref": x}). *fn is the long name, *arg the argument. */
static bool intrinsic(cfn *c, yaml_node_t *n, char fn[64], yaml_node_t **arg)
{
    if (local_tag(n)) {
        const char *t = (const char *)n->tag + 1;
        if (strcmp(t, "Ref") == 0 || strcmp(t, "Condition") == 0)
            snprintf(fn, 64, "%s", t);
        else
            snprintf(fn, 64, "Fn::%.50s", t);
        *arg = n;
        return true;
    }
    if (is_map(n) && n->data.mapping.pairs.top - n->data.mapping.pairs.start == 1) {
        yaml_node_t *k = node(c, n->data.mapping.pairs.start->key);
        if (is_scalar(k) && (strcmp(stext(k), "Ref") == 0 || strncmp(stext(k), "Fn::", 4) == 0)) {
            snprintf(fn, 64, "%.60s", stext(k));
            *arg = node(c, n->data.mapping.pairs.start->value);
            return true;
        }
    }
    return false;
}

typedef struct rtype {
    const char *type;
    const char *name_prop; /* the property naming the physical resource */
    bool ref_is_arn;       /* Ref gives the ARN (SNS topics) rather than the name */
    const char *arn;       /* ARN pattern: {P} partition, {R} region, {A} account, {N} name */
    const char *why;       /* NULL: emulated (AWS::IoT::TopicRule) */
} rtype;

static const rtype rtypes[] = {
    {"AWS::IoT::TopicRule", "RuleName", false, "arn:{P}:iot:{R}:{A}:rule/{N}", NULL},
    {"AWS::Lambda::Function", "FunctionName", false, "arn:{P}:lambda:{R}:{A}:function:{N}",
     "not emulated: the function's code does not run; a rule's lambda action publishes its "
     "input on $CONTROL/cloudiot/v1/lambda/<functionName> (doc/emulator.md)"},
    {"AWS::Lambda::Permission", NULL, false, NULL,
     "not emulated: the emulator does not check permissions"},
    {"AWS::SNS::Topic", "TopicName", true, "arn:{P}:sns:{R}:{A}:{N}",
     "not emulated: a rule's sns action publishes on $CONTROL/cloudiot/v1/sns/<topicName> "
     "(doc/emulator.md)"},
    {"AWS::DynamoDB::Table", "TableName", false, "arn:{P}:dynamodb:{R}:{A}:table/{N}",
     "not emulated: a rule's dynamoDBv2 action writes rows into <data>/rules.sqlite3, table "
     "<tableName> (doc/emulator.md)"},
    {"AWS::IAM::Role", "RoleName", false, "arn:{P}:iam::{A}:role/{N}",
     "not emulated: the emulator does not check roles (roleArn is kept, not used)"},
    {"AWS::IAM::Policy", "PolicyName", false, NULL,
     "not emulated: the emulator does not check IAM policies"},
};

static const rtype *rtype_of(const char *type)
{
    for (size_t i = 0; i < sizeof rtypes / sizeof rtypes[0]; i++)
        if (strcmp(rtypes[i].type, type) == 0)
            return &rtypes[i];
    return NULL;
}

static int eval_str(cfn *c, yaml_node_t *n, sb *out);

/* The resource @p id, its type and its rtype (NULL when the type is not known). */
static yaml_node_t *resource(cfn *c, const char *id, const char **type, const rtype **rt)
{
    yaml_node_t *r = map_get(c, c->resources, id, NULL);
    if (!is_map(r))
        return NULL;
    yaml_node_t *t = map_get(c, r, "Type", NULL);
    *type = is_scalar(t) ? stext(t) : "";
    *rt = rtype_of(*type);
    return r;
}

/* The physical name of a resource: its name property, or (CloudFormation
 * would add a random suffix) "<stack>-<logicalId>"; a topic rule without
 * RuleName is named by its logical id (rule names allow no '-'). */
static int physical_name(cfn *c, yaml_node_t *res, const char *id, const rtype *rt, sb *out)
{
    yaml_node_t *props = map_get(c, res, "Properties", NULL);
    yaml_node_t *name = rt->name_prop ? map_get(c, props, rt->name_prop, NULL) : NULL;
    if (name)
        return eval_str(c, name, out);
    if (strcmp(rt->type, "AWS::IoT::TopicRule") == 0)
        return sb_adds(c, out, id);
    if (sb_adds(c, out, c->stack) || sb_adds(c, out, "-"))
        return c->rc;
    return sb_adds(c, out, id);
}

static int arn_of(cfn *c, const rtype *rt, const char *name, sb *out)
{
    for (const char *p = rt->arn; *p; p++) {
        const char *v = NULL;
        if (p[0] == '{' && p[1] && p[2] == '}') {
            v = p[1] == 'P' ? "aws" : p[1] == 'R' ? c->region : p[1] == 'A' ? c->account : name;
            p += 2;
        }
        if (v ? sb_adds(c, out, v) : sb_add(c, out, p, 1))
            return c->rc;
    }
    return 0;
}

static int enter(cfn *c, const yaml_node_t *n)
{
    if (++c->depth > CFN_MAX_DEPTH) {
        fail(c, n, "nesting or references deeper than %d (a circular reference?)", CFN_MAX_DEPTH);
        c->rc = CIOT_EDEPTH;
        return c->rc;
    }
    return work(c, n);
}

/* Ref: a parameter, a pseudo parameter or a resource. @p at is for messages. */
static int ref(cfn *c, const yaml_node_t *at, const char *name, sb *out)
{
    json_t *v = json_object_get(c->values, name);
    if (v)
        return sb_adds(c, out, json_string_value(v));
    if (strcmp(name, "AWS::Region") == 0)
        return sb_adds(c, out, c->region);
    if (strcmp(name, "AWS::AccountId") == 0)
        return sb_adds(c, out, c->account);
    if (strcmp(name, "AWS::Partition") == 0)
        return sb_adds(c, out, "aws");
    if (strcmp(name, "AWS::StackName") == 0)
        return sb_adds(c, out, c->stack);
    if (strcmp(name, "AWS::URLSuffix") == 0)
        return sb_adds(c, out, "amazonaws.com");
    if (strncmp(name, "AWS::", 5) == 0)
        return fail(c, at, "pseudo parameter %s is not supported by the emulator", name);
    const char *type;
    const rtype *rt;
    yaml_node_t *res = resource(c, name, &type, &rt);
    if (!res)
        return fail(c, at, "Unresolved reference %s: not a parameter, pseudo parameter or "
                           "resource of the template", name);
    if (!rt || !rt->name_prop)
        return fail(c, at, "Ref to %s (%s) is not supported by the emulator", name, type);
    if (enter(c, at))
        return c->rc;
    sb nm = {0};
    int rc = physical_name(c, res, name, rt, &nm);
    if (!rc)
        rc = rt->ref_is_arn ? arn_of(c, rt, nm.p, out) : sb_adds(c, out, nm.p);
    sb_free(&nm);
    c->depth--;
    return rc;
}

static int getatt(cfn *c, const yaml_node_t *at, const char *id, const char *attr, sb *out)
{
    const char *type;
    const rtype *rt;
    yaml_node_t *res = resource(c, id, &type, &rt);
    if (!res)
        return fail(c, at, "Fn::GetAtt: %s is not a resource of the template", id);
    bool arn = strcmp(attr, "Arn") == 0 ||
               (strcmp(type, "AWS::SNS::Topic") == 0 && strcmp(attr, "TopicArn") == 0);
    bool name = strcmp(type, "AWS::SNS::Topic") == 0 && strcmp(attr, "TopicName") == 0;
    if (!rt || !rt->name_prop || !(name || (arn && rt->arn)))
        return fail(c, at, "Fn::GetAtt %s.%s: attribute %s of %s is not supported by the emulator",
                    id, attr, attr, type);
    if (enter(c, at))
        return c->rc;
    sb nm = {0};
    int rc = physical_name(c, res, id, rt, &nm);
    if (!rc)
        rc = arn ? arn_of(c, rt, nm.p, out) : sb_adds(c, out, nm.p);
    sb_free(&nm);
    c->depth--;
    return rc;
}

/* A literal string argument (no intrinsic). */
static const char *literal(cfn *c, yaml_node_t *n, const char *what)
{
    if (!is_scalar(n)) {
        fail(c, n, "%s must be a string", what);
        return NULL;
    }
    if (strlen(stext(n)) != n->data.scalar.length) {
        fail(c, n, "%s contains a NUL byte", what);
        return NULL;
    }
    return stext(n);
}

/* Fn::Sub. ${Name}: a variable of the list form, a parameter, a pseudo
 * parameter, a resource (its Ref) or Resource.Attribute (Fn::GetAtt);
 * ${!Text} is the literal ${Text}. Anything else in ${} is an error, as on
 * AWS: write IoT SQL substitution templates as ${!topic(2)}. */
static int sub(cfn *c, yaml_node_t *arg, sb *out)
{
    yaml_node_t *tmpl = arg, *vars = NULL;
    if (is_seq(arg)) {
        if (arg->data.sequence.items.top - arg->data.sequence.items.start != 2)
            return fail(c, arg, "Fn::Sub takes a string or a list [string, {variables}]");
        tmpl = node(c, arg->data.sequence.items.start[0]);
        vars = node(c, arg->data.sequence.items.start[1]);
        if (check_keys(c, vars, "Fn::Sub variables", NULL))
            return c->rc;
    }
    const char *s = literal(c, tmpl, "the Fn::Sub template");
    if (!s)
        return c->rc;
    while (*s) {
        const char *d = strstr(s, "${");
        if (!d)
            return sb_adds(c, out, s);
        if (sb_add(c, out, s, (size_t)(d - s)))
            return c->rc;
        if (d[2] == '!') { /* ${!Literal} -> ${Literal} */
            if (sb_adds(c, out, "${"))
                return c->rc;
            s = d + 3;
            continue;
        }
        const char *e = strchr(d + 2, '}');
        if (!e)
            return fail(c, tmpl, "Fn::Sub: unterminated ${ in \"%s\"", stext(tmpl));
        char name[256];
        size_t nl = (size_t)(e - d - 2);
        if (nl == 0 || nl >= sizeof name)
            return fail(c, tmpl, "Fn::Sub: bad variable ${%.*s}", (int)(nl < 200 ? nl : 200),
                        d + 2);
        memcpy(name, d + 2, nl);
        name[nl] = '\0';
        for (size_t i = 0; i < nl; i++)
            if (isspace((unsigned char)name[i]))
                return fail(c, tmpl, "Fn::Sub: bad variable ${%s}", name);
        yaml_node_t *v = vars ? map_get(c, vars, name, NULL) : NULL;
        const char *dot = strchr(name, '.');
        if (v) {
            if (eval_str(c, v, out))
                return c->rc;
        } else if (json_object_get(c->values, name) || strncmp(name, "AWS::", 5) == 0) {
            if (ref(c, tmpl, name, out))
                return c->rc;
        } else {
            const char *type;
            const rtype *rt;
            char id[256];
            snprintf(id, sizeof id, "%.*s", dot ? (int)(dot - name) : (int)nl, name);
            if (!resource(c, id, &type, &rt))
                return fail(c, tmpl,
                            "Fn::Sub: ${%s} is not a parameter, pseudo parameter or resource of "
                            "the template (an IoT SQL substitution template must be written "
                            "${!%s}, as AWS documents)",
                            name, name);
            if ((dot ? getatt(c, tmpl, id, dot + 1, out) : ref(c, tmpl, name, out)) != 0)
                return c->rc;
        }
        s = e + 1;
    }
    return 0;
}

static int eval_list(cfn *c, yaml_node_t *n, json_t *out);

static int join(cfn *c, yaml_node_t *arg, sb *out)
{
    if (!is_seq(arg) || arg->data.sequence.items.top - arg->data.sequence.items.start != 2)
        return fail(c, arg, "Fn::Join takes a list [delimiter, [values]]");
    const char *delim = literal(c, node(c, arg->data.sequence.items.start[0]), "the delimiter");
    if (!delim)
        return c->rc;
    json_t *items = json_array();
    if (!items)
        return nomem(c);
    if (eval_list(c, node(c, arg->data.sequence.items.start[1]), items) == 0) {
        size_t i;
        json_t *v;
        json_array_foreach(items, i, v)
        {
            if ((i && sb_adds(c, out, delim)) || sb_adds(c, out, json_string_value(v)))
                break;
        }
    }
    json_decref(items);
    return c->rc;
}

/* A value that must become a string. */
static int eval_str(cfn *c, yaml_node_t *n, sb *out)
{
    if (enter(c, n))
        return c->rc;
    char fn[64];
    yaml_node_t *arg;
    if (intrinsic(c, n, fn, &arg)) {
        if (strcmp(fn, "Ref") == 0) {
            const char *name = literal(c, arg, "the argument of Ref");
            if (name)
                ref(c, arg, name, out);
        } else if (strcmp(fn, "Fn::Sub") == 0) {
            sub(c, arg, out);
        } else if (strcmp(fn, "Fn::Join") == 0) {
            join(c, arg, out);
        } else if (strcmp(fn, "Fn::GetAtt") == 0) {
            char id[256], attr[256];
            if (is_scalar(arg)) {
                const char *s = literal(c, arg, "the argument of Fn::GetAtt");
                const char *dot = s ? strchr(s, '.') : NULL;
                if (s && !dot)
                    fail(c, arg, "Fn::GetAtt takes Resource.Attribute or [Resource, Attribute]");
                if (dot) {
                    snprintf(id, sizeof id, "%.*s", (int)(dot - s), s);
                    snprintf(attr, sizeof attr, "%s", dot + 1);
                    getatt(c, arg, id, attr, out);
                }
            } else if (is_seq(arg) &&
                       arg->data.sequence.items.top - arg->data.sequence.items.start == 2) {
                const char *a = literal(c, node(c, arg->data.sequence.items.start[0]),
                                        "the resource of Fn::GetAtt");
                const char *b = a ? literal(c, node(c, arg->data.sequence.items.start[1]),
                                            "the attribute of Fn::GetAtt")
                                  : NULL;
                if (b) {
                    snprintf(id, sizeof id, "%s", a);
                    snprintf(attr, sizeof attr, "%s", b);
                    getatt(c, arg, id, attr, out);
                }
            } else {
                fail(c, arg, "Fn::GetAtt takes Resource.Attribute or [Resource, Attribute]");
            }
        } else {
            fail(c, n, "intrinsic function %s is not supported by the emulator (supported: Ref, "
                       "Fn::Sub, Fn::Join, Fn::GetAtt)",
                 fn);
        }
    } else if (is_scalar(n)) {
        const char *s = literal(c, n, "a string");
        if (s)
            sb_adds(c, out, s);
    } else {
        fail(c, n, "expected a string, found a %s", is_map(n) ? "mapping" : "list");
    }
    c->depth--;
    return c->rc;
}

/* A value that must become a list of strings (Fn::Join's second argument). */
static int eval_list(cfn *c, yaml_node_t *n, json_t *out)
{
    char fn[64];
    yaml_node_t *arg;
    if (intrinsic(c, n, fn, &arg))
        return fail(c, n, "%s as a list is not supported by the emulator; write the list", fn);
    if (!is_seq(n))
        return fail(c, n, "expected a list");
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        sb s = {0};
        if (eval_str(c, node(c, *it), &s) == 0 &&
            json_array_append_new(out, json_string(s.p ? s.p : "")) != 0)
            nomem(c);
        sb_free(&s);
        if (c->rc)
            return c->rc;
    }
    return 0;
}

/* ------------------------------------------------------------ parameters */

static bool is_number(const char *s)
{
    char *end;
    if (!*s || isspace((unsigned char)*s))
        return false;
    (void)strtod(s, &end);
    return *end == '\0';
}

static int load_parameters(cfn *c)
{
    static const char *const keys[] = {"Type", "Default", "Description", "AllowedValues",
                                       "AllowedPattern", "ConstraintDescription", "MinValue",
                                       "MaxValue", "MinLength", "MaxLength", "NoEcho", NULL};
    /* overrides first: each must name a parameter */
    for (size_t i = 0; i < c->o->noverrides; i++) {
        const char *kv = c->o->overrides[i];
        const char *eq = kv ? strchr(kv, '=') : NULL;
        if (!eq || eq == kv)
            return fail(c, NULL, "parameter override '%s' is not Key=Value", kv ? kv : "");
        char k[256];
        snprintf(k, sizeof k, "%.*s", (int)(eq - kv), kv);
        yaml_node_t *kn = NULL;
        if (!map_get(c, c->params, k, &kn))
            return fail(c, NULL, "Parameters: [%s] do not exist in the template", k);
        if (json_object_set_new(c->values, k, json_string(eq + 1)) != 0)
            return nomem(c);
    }
    if (!c->params)
        return 0;
    if (check_keys(c, c->params, "Parameters", NULL))
        return c->rc;
    for (yaml_node_pair_t *p = c->params->data.mapping.pairs.start;
         p < c->params->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(c, p->key), *v = node(c, p->value);
        const char *name = stext(k);
        for (const char *q = name; *q; q++)
            if (!isalnum((unsigned char)*q))
                return fail(c, k, "parameter name %s is not alphanumeric", name);
        if (check_keys(c, v, name, keys))
            return c->rc;
        yaml_node_t *type = map_get(c, v, "Type", NULL);
        const char *t = type ? literal(c, type, "Type") : NULL;
        if (!t)
            return type ? c->rc : fail(c, v, "parameter %s has no Type", name);
        bool number = strcmp(t, "Number") == 0;
        if (!number && strcmp(t, "String") != 0)
            return fail(c, type, "parameter %s: Type %s is not supported by the emulator "
                                 "(String, Number)",
                        name, t);
        json_t *given = json_object_get(c->values, name);
        if (!given) {
            yaml_node_t *def = map_get(c, v, "Default", NULL);
            if (!def)
                return fail(c, k, "Parameters: [%s] must have values", name);
            const char *d = literal(c, def, "Default");
            if (!d)
                return c->rc;
            if (json_object_set_new(c->values, name, json_string(d)) != 0)
                return nomem(c);
            given = json_object_get(c->values, name);
        }
        const char *val = json_string_value(given);
        if (number && !is_number(val))
            return fail(c, k, "Parameter '%s' must be a number (got '%s')", name, val);
        yaml_node_t *allowed = map_get(c, v, "AllowedValues", NULL);
        if (allowed) {
            if (!is_seq(allowed))
                return fail(c, allowed, "AllowedValues must be a list");
            bool ok = false;
            for (yaml_node_item_t *it = allowed->data.sequence.items.start;
                 it < allowed->data.sequence.items.top; it++) {
                yaml_node_t *a = node(c, *it);
                ok = ok || (is_scalar(a) && strcmp(stext(a), val) == 0);
            }
            if (!ok)
                return fail(c, k, "Parameter '%s' must be one of AllowedValues", name);
        }
    }
    return 0;
}

/* ------------------------------------------------------------ topic rules */

/* The explicit mapping of CloudFormation property names to CreateTopicRule
 * members. kind: 's' string, 'b' boolean, 'q' QoS (0 or 1), 'f' SNS message
 * format (RAW|JSON), 'o' object (sub), 'A' list of actions, 'a' one action. */
typedef struct field {
    const char *cfn, *json;
    char kind;
    bool required;
    const struct field *sub;
} field;

static const field f_lambda[] = {{"FunctionArn", "functionArn", 's', true, NULL}, {0}};
static const field f_sns[] = {{"TargetArn", "targetArn", 's', true, NULL},
                              {"RoleArn", "roleArn", 's', true, NULL},
                              {"MessageFormat", "messageFormat", 'f', false, NULL},
                              {0}};
static const field f_republish[] = {{"Topic", "topic", 's', true, NULL},
                                    {"Qos", "qos", 'q', false, NULL},
                                    {"RoleArn", "roleArn", 's', true, NULL},
                                    {0}};
static const field f_putitem[] = {{"TableName", "tableName", 's', true, NULL}, {0}};
static const field f_dynamov2[] = {{"RoleArn", "roleArn", 's', true, NULL},
                                   {"PutItem", "putItem", 'o', true, f_putitem},
                                   {0}};
/* The action kinds: CloudFormation key -> CreateTopicRule key. */
static const field f_actions[] = {{"Lambda", "lambda", 'o', false, f_lambda},
                                  {"Sns", "sns", 'o', false, f_sns},
                                  {"Republish", "republish", 'o', false, f_republish},
                                  {"DynamoDBv2", "dynamoDBv2", 'o', false, f_dynamov2},
                                  {0}};
static const field f_payload[] = {{"Sql", "sql", 's', true, NULL},
                                  {"Description", "description", 's', false, NULL},
                                  {"RuleDisabled", "ruleDisabled", 'b', false, NULL},
                                  {"AwsIotSqlVersion", "awsIotSqlVersion", 's', false, NULL},
                                  {"Actions", "actions", 'A', true, NULL},
                                  {"ErrorAction", "errorAction", 'a', false, NULL},
                                  {0}};

/* CloudFormation's other action kinds: known, not emulated. */
static const char *const other_actions[] = {
    "CloudwatchAlarm", "CloudwatchLogs", "CloudwatchMetric", "DynamoDB", "Elasticsearch",
    "Firehose", "Http", "IotAnalytics", "IotEvents", "IotSiteWise", "Kafka", "Kinesis",
    "Location", "OpenSearch", "S3", "Sqs", "StepFunctions", "Timestream", NULL};

static int convert_object(cfn *c, yaml_node_t *n, const char *what, const field *fields,
                          json_t *out);

static int convert_action(cfn *c, yaml_node_t *n, json_t **out)
{
    *out = NULL;
    char fn[64];
    yaml_node_t *arg;
    if (intrinsic(c, n, fn, &arg))
        return fail(c, n, "an action must be written out (%s is not supported here)", fn);
    if (check_keys(c, n, "an action", NULL))
        return c->rc;
    if (n->data.mapping.pairs.top - n->data.mapping.pairs.start != 1)
        return fail(c, n, "an action must have exactly one kind (Lambda, Sns, Republish, "
                          "DynamoDBv2)");
    yaml_node_t *k = node(c, n->data.mapping.pairs.start->key);
    yaml_node_t *v = node(c, n->data.mapping.pairs.start->value);
    const field *f = NULL;
    for (size_t i = 0; f_actions[i].cfn; i++)
        if (strcmp(f_actions[i].cfn, stext(k)) == 0)
            f = &f_actions[i];
    if (!f) {
        for (size_t i = 0; other_actions[i]; i++)
            if (strcmp(other_actions[i], stext(k)) == 0)
                return fail(c, k, "action %s is not emulated (emulated: Lambda, Sns, Republish, "
                                  "DynamoDBv2)",
                            stext(k));
        return fail(c, k, "unknown action kind %s", stext(k));
    }
    json_t *inner = json_object();
    json_t *a = json_object();
    if (!inner || !a || json_object_set_new(a, f->json, inner) != 0) {
        json_decref(inner);
        json_decref(a);
        return nomem(c);
    }
    if (convert_object(c, v, stext(k), f->sub, inner) != 0) {
        json_decref(a);
        return c->rc;
    }
    *out = a;
    return 0;
}

static int convert_value(cfn *c, yaml_node_t *v, const field *f, json_t **out)
{
    *out = NULL;
    if (f->kind == 'o') {
        json_t *o = json_object();
        if (!o)
            return nomem(c);
        if (convert_object(c, v, f->cfn, f->sub, o) != 0) {
            json_decref(o);
            return c->rc;
        }
        *out = o;
        return 0;
    }
    if (f->kind == 'a')
        return convert_action(c, v, out);
    if (f->kind == 'A') {
        if (!is_seq(v))
            return fail(c, v, "%s must be a list of actions", f->cfn);
        json_t *arr = json_array();
        if (!arr)
            return nomem(c);
        for (yaml_node_item_t *it = v->data.sequence.items.start;
             it < v->data.sequence.items.top; it++) {
            json_t *a;
            if (convert_action(c, node(c, *it), &a) != 0) {
                json_decref(arr);
                return c->rc;
            }
            if (json_array_append_new(arr, a) != 0) {
                json_decref(arr);
                return nomem(c);
            }
        }
        *out = arr;
        return 0;
    }
    sb s = {0};
    if (eval_str(c, v, &s) != 0) {
        sb_free(&s);
        return c->rc;
    }
    const char *t = s.p ? s.p : "";
    json_t *j = NULL;
    switch (f->kind) {
    case 'b':
        if (strcmp(t, "true") == 0 || strcmp(t, "True") == 0 || strcmp(t, "TRUE") == 0)
            j = json_true();
        else if (strcmp(t, "false") == 0 || strcmp(t, "False") == 0 || strcmp(t, "FALSE") == 0)
            j = json_false();
        else
            fail(c, v, "%s must be true or false (got '%s')", f->cfn, t);
        break;
    case 'q':
        if (strcmp(t, "0") == 0 || strcmp(t, "1") == 0)
            j = json_integer(t[0] - '0');
        else
            fail(c, v, "%s must be 0 or 1 (got '%s')", f->cfn, t);
        break;
    case 'f':
        if (strcmp(t, "RAW") == 0 || strcmp(t, "JSON") == 0)
            j = json_string(t);
        else
            fail(c, v, "%s must be RAW or JSON (got '%s')", f->cfn, t);
        break;
    default:
        j = json_string(t);
        break;
    }
    sb_free(&s);
    if (c->rc)
        return c->rc;
    if (!j)
        return nomem(c);
    *out = j;
    return 0;
}

static int convert_object(cfn *c, yaml_node_t *n, const char *what, const field *fields,
                          json_t *out)
{
    const char *keys[16];
    size_t nk = 0;
    for (; fields[nk].cfn && nk < 15; nk++)
        keys[nk] = fields[nk].cfn;
    keys[nk] = NULL;
    char fn[64];
    yaml_node_t *arg;
    if (intrinsic(c, n, fn, &arg))
        return fail(c, n, "%s must be written out (%s is not supported here)", what, fn);
    if (check_keys(c, n, what, keys))
        return c->rc;
    for (const field *f = fields; f->cfn; f++) {
        yaml_node_t *v = map_get(c, n, f->cfn, NULL);
        if (!v) {
            if (f->required)
                return fail(c, n, "%s: required property %s is missing", what, f->cfn);
            continue;
        }
        json_t *j;
        if (convert_value(c, v, f, &j) != 0)
            return c->rc;
        if (json_object_set_new(out, f->json, j) != 0)
            return nomem(c);
    }
    return 0;
}

bool ciot__cfn_rule_name_valid(const char *name, size_t len)
{
    if (!name || len == 0 || len > 128)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!(isalnum((unsigned char)name[i]) || name[i] == '_') || (name[i] & 0x80))
            return false;
    return true;
}

static int convert_rule(cfn *c, yaml_node_t *res, const char *id, json_t *rules)
{
    static const char *const keys[] = {"RuleName", "TopicRulePayload", "Tags", NULL};
    yaml_node_t *props = map_get(c, res, "Properties", NULL);
    if (!props)
        return fail(c, res, "Properties are missing");
    if (check_keys(c, props, "Properties", keys))
        return c->rc;
    sb name = {0};
    yaml_node_t *rn = map_get(c, props, "RuleName", NULL);
    if (physical_name(c, res, id, rtype_of("AWS::IoT::TopicRule"), &name) != 0) {
        sb_free(&name);
        return c->rc;
    }
    if (!ciot__cfn_rule_name_valid(name.p, name.len)) {
        fail(c, rn ? rn : res, "RuleName '%s' is not 1 to 128 characters of [a-zA-Z0-9_]",
             name.p);
        sb_free(&name);
        return c->rc;
    }
    size_t i;
    json_t *r;
    json_array_foreach(rules, i, r)
    {
        if (strcmp(json_string_value(json_object_get(r, "ruleName")), name.p) == 0) {
            fail(c, rn ? rn : res, "two resources make the rule %s", name.p);
            sb_free(&name);
            return c->rc;
        }
    }
    yaml_node_t *pl = map_get(c, props, "TopicRulePayload", NULL);
    if (!pl) {
        sb_free(&name);
        return fail(c, props, "required property TopicRulePayload is missing");
    }
    json_t *payload = json_object();
    json_t *rule = payload ? json_pack("{s:s,s:o}", "ruleName", name.p, "topicRulePayload",
                                       payload)
                           : NULL;
    sb_free(&name);
    if (!rule)
        return nomem(c);
    if (convert_object(c, pl, "TopicRulePayload", f_payload, payload) != 0) {
        json_decref(rule);
        return c->rc;
    }
    if (json_array_append_new(rules, rule) != 0)
        return nomem(c);
    return 0;
}

static int note(cfn *c, json_t *notes, const char *id, const char *type, const char *why)
{
    json_t *n = json_pack("{s:s,s:s,s:s}", "logicalId", id, "type", type, "reason", why);
    if (!n || json_array_append_new(notes, n) != 0)
        return nomem(c);
    return 0;
}

static int load_resources(cfn *c, ciot__cfn_result *out)
{
    static const char *const keys[] = {"Type", "Properties", "DependsOn", "Metadata",
                                       "DeletionPolicy", "UpdateReplacePolicy", "Condition",
                                       "CreationPolicy", "UpdatePolicy", NULL};
    if (check_keys(c, c->resources, "Resources", NULL))
        return c->rc;
    if (c->resources->data.mapping.pairs.top == c->resources->data.mapping.pairs.start)
        return fail(c, c->resources, "Resources must not be empty");
    for (yaml_node_pair_t *p = c->resources->data.mapping.pairs.start;
         p < c->resources->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(c, p->key), *v = node(c, p->value);
        const char *id = stext(k);
        c->resource = NULL;
        for (const char *q = id; *q; q++)
            if (!isalnum((unsigned char)*q) || (*q & 0x80))
                return fail(c, k, "logical id %s is not alphanumeric", id);
        c->resource = id;
        if (check_keys(c, v, "the resource", keys))
            return c->rc;
        yaml_node_t *cond = map_get(c, v, "Condition", NULL);
        if (cond)
            return fail(c, cond, "conditions are not supported by the emulator");
        yaml_node_t *tn = map_get(c, v, "Type", NULL);
        if (!tn)
            return fail(c, v, "Type is missing");
        const char *type = literal(c, tn, "Type");
        if (!type)
            return c->rc;
        const rtype *rt = rtype_of(type);
        if (rt && !rt->why) {
            if (convert_rule(c, v, id, out->rules) != 0)
                return c->rc;
        } else if (rt) {
            if (note(c, out->notes, id, type, rt->why) != 0)
                return c->rc;
        } else if (c->o->skip_unsupported) {
            if (note(c, out->notes, id, type,
                     "not supported by the emulator: skipped (--skip-unsupported)") != 0)
                return c->rc;
        } else {
            return fail(c, tn, "resource type %s is not supported by the emulator (use "
                               "--skip-unsupported to skip it)",
                        type);
        }
    }
    c->resource = NULL;
    return 0;
}

static int load_template(cfn *c, ciot__cfn_result *out)
{
    static const char *const top[] = {"AWSTemplateFormatVersion", "Description", "Metadata",
                                      "Parameters", "Resources", "Outputs", "Mappings",
                                      "Conditions", "Rules", "Transform", NULL};
    yaml_node_t *root = yaml_document_get_root_node(&c->doc);
    if (!root)
        return fail(c, NULL, "the template is empty");
    if (check_keys(c, root, "the template", top))
        return c->rc;
    const char *unsupported[] = {"Mappings", "Conditions", "Rules", "Transform"};
    for (size_t i = 0; i < 4; i++) {
        yaml_node_t *kn;
        if (map_get(c, root, unsupported[i], &kn))
            return fail(c, kn, "%s %s not supported by the emulator", unsupported[i],
                        i == 3 ? "is" : "are");
    }
    yaml_node_t *ver = map_get(c, root, "AWSTemplateFormatVersion", NULL);
    if (ver && !scalar_is(ver, "2010-09-09"))
        return fail(c, ver, "AWSTemplateFormatVersion must be 2010-09-09");
    c->params = map_get(c, root, "Parameters", NULL);
    c->resources = map_get(c, root, "Resources", NULL);
    if (!c->resources)
        return fail(c, root, "the template has no Resources");
    if (load_parameters(c) != 0)
        return c->rc;
    return load_resources(c, out);
}

void ciot__cfn_result_free(ciot__cfn_result *r)
{
    if (!r)
        return;
    json_decref(r->rules);
    json_decref(r->notes);
    r->rules = r->notes = NULL;
}

int ciot__cfn_load(ciot__cfn_result *out, const char *text, size_t len,
                   const ciot__cfn_options *opts, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!out || (!text && len) || !opts) {
        if (err && errlen)
            snprintf(err, errlen, "bad argument");
        return CIOT_EINVAL;
    }
    out->rules = json_array();
    out->notes = json_array();
    cfn c = {.o = opts, .err = err, .errlen = errlen, .budget = CFN_BUDGET};
    c.region = opts->region ? opts->region : "us-east-1";
    c.account = opts->account ? opts->account : "123456789012";
    c.stack = opts->stack_name ? opts->stack_name : "cloudiot-emulator";
    c.values = json_object();
    if (!out->rules || !out->notes || !c.values) {
        json_decref(c.values);
        ciot__cfn_result_free(out);
        return nomem(&c);
    }
    if (memchr(text, '\0', len)) {
        json_decref(c.values);
        ciot__cfn_result_free(out);
        return fail(&c, NULL, "the template contains a NUL byte");
    }
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        json_decref(c.values);
        ciot__cfn_result_free(out);
        return nomem(&c);
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &c.doc)) {
        const char *what = parser.problem ? parser.problem : "cannot parse";
        if (err && errlen)
            snprintf(err, errlen, "%lu:%lu: YAML: %s%s%s",
                     (unsigned long)parser.problem_mark.line + 1,
                     (unsigned long)parser.problem_mark.column + 1, what,
                     parser.context ? " " : "", parser.context ? parser.context : "");
        c.rc = parser.error == YAML_MEMORY_ERROR ? CIOT_ENOMEM : CIOT_EINVAL;
        yaml_parser_delete(&parser);
        json_decref(c.values);
        ciot__cfn_result_free(out);
        return c.rc;
    }
    int rc = load_template(&c, out);
    if (rc == 0) {
        /* one document only */
        yaml_document_t next;
        if (!yaml_parser_load(&parser, &next)) {
            rc = fail(&c, NULL, "YAML: %s", parser.problem ? parser.problem : "cannot parse");
        } else {
            if (yaml_document_get_root_node(&next))
                rc = fail(&c, yaml_document_get_root_node(&next),
                          "a second YAML document in the template");
            yaml_document_delete(&next);
        }
    }
    yaml_document_delete(&c.doc);
    yaml_parser_delete(&parser);
    json_decref(c.values);
    if (rc)
        ciot__cfn_result_free(out);
    return rc;
}
