/*
 * AWS IoT policies (the JSON policy language of IAM as AWS IoT Core uses
 * it): parse a policy document once, then decide whether an action on a
 * resource is allowed for one connection.
 *
 * Internal; never exported. Pure: no I/O, no clock, no threads, no globals.
 * Used by the emulator's authorization and by the unit tests.
 *
 * Document: {"Version":"2012-10-17","Statement":[{"Effect":"Allow"|"Deny",
 * "Action":"iot:Publish"|[...],"Resource":"arn:..."|[...]}, ...]}; a single
 * statement object is accepted in place of the array; "Id" and "Sid"
 * (strings) are accepted and ignored; any other key is refused (EINVAL).
 * Actions and resources may use the wildcards `*` (any run of characters,
 * '/' and ':' included) and `?` (one character: one byte in actions, one
 * UTF-8 character in resources); actions compare without regard to ASCII
 * case, resources with.
 * Version "2012-10-17": policy variables in resources are substituted:
 * ${iot:Connection.Thing.ThingName}, ${iot:ClientId},
 * ${iot:Connection.Thing.IsAttached} ("true"/"false"), from the context, and
 * always matched as literal text (a '*' in a client id is not a wildcard);
 * ${*}, ${?} and ${$} stand for the characters themselves (IAM escapes).
 * Version "2008-10-17", or no Version (IAM's default): no substitution at
 * all, "${...}" is plain text (as IAM documents).
 * Size: at most 2048 characters excluding whitespace (AWS IoT's CreatePolicy
 * limit; it bounds statements and patterns too), and 32 KiB raw.
 * A statement that would need something this module does not evaluate
 * (Condition, NotAction, NotResource, Principal, NotPrincipal, any other
 * variable, a variable default value) makes the parse fail with
 * CIOT_ENOTBUILT and a message naming it: it is never ignored, since
 * ignoring it could allow more than the author meant.
 * Evaluation allocates nothing; see doc/aws-policy.md.
 */
#ifndef CIOT_CORE_AWS_POLICY_H
#define CIOT_CORE_AWS_POLICY_H

#include <stdbool.h>
#include <stddef.h>

typedef struct ciot__aws_policy ciot__aws_policy;

/* What a connection's policies say about one request. */
enum {
    CIOT__POLICY_IMPLICIT_DENY = 0, /* no statement matched */
    CIOT__POLICY_ALLOW = 1,         /* an Allow matched and no Deny did */
    CIOT__POLICY_EXPLICIT_DENY = 2  /* a Deny matched (wins over any Allow) */
};

/* Values substituted for policy variables; a NULL member makes every
 * resource that uses its variable match nothing (as AWS does when, say, no
 * thing is attached). */
typedef struct ciot__aws_policy_ctx {
    const char *client_id;
    const char *thing_name;
    bool thing_attached;
} ciot__aws_policy_ctx;

/*
 * Parses a policy document (@p len bytes, no NUL needed).
 * On failure writes a one-line reason to @p errmsg (if not NULL; always
 * NUL-terminated, truncated to @p errmsg_len) such as
 * "Statement[1].Effect: must be \"Allow\" or \"Deny\"".
 * @retval 0 *out set; free with ciot__aws_policy_free()
 * @retval CIOT_EINVAL NULL arguments, or not a valid policy document
 * @retval CIOT_ENOTBUILT a valid document using a feature not evaluated here
 * @retval CIOT_ENOMEM
 */
int ciot__aws_policy_parse(ciot__aws_policy **out, const char *json, size_t len, char *errmsg,
                           size_t errmsg_len);
void ciot__aws_policy_free(ciot__aws_policy *p);

/*
 * Evaluates @p action (e.g. "iot:Publish") on @p resource (a full ARN such
 * as "arn:aws:iot:us-east-1:123456789012:topic/sensors/t1/temp") against
 * @p n policies (the union of every policy attached to the certificate).
 * Returns one of the CIOT__POLICY_* values: any matching Deny gives
 * EXPLICIT_DENY, else any matching Allow gives ALLOW. NULL @p policies,
 * @p action, @p resource or @p ctx give CIOT__POLICY_IMPLICIT_DENY; NULL
 * entries of @p policies are skipped. @p action and @p resource are
 * NUL-terminated. Never allocates.
 */
int ciot__aws_policy_eval(const ciot__aws_policy *const *policies, size_t n, const char *action,
                          const char *resource, const ciot__aws_policy_ctx *ctx);

#endif /* CIOT_CORE_AWS_POLICY_H */
