/* libFuzzer target: the emulator's CloudFormation loader (emulator/cfn.c)
 * on arbitrary templates. The first byte chooses the options (skip
 * unsupported types, a parameter override); the rest is the template. */
#include "cfn.h"

#include <cloudiot/error.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *ov[] = {"AlertThreshold=40"};
    ciot__cfn_options o = {.skip_unsupported = (data[0] & 1) != 0,
                           .overrides = (data[0] & 2) ? ov : NULL,
                           .noverrides = (data[0] & 2) ? 1 : 0};
    ciot__cfn_result r;
    char err[256];
    int rc = ciot__cfn_load(&r, (const char *)data + 1, size - 1, &o, err, sizeof err);
    if (rc == 0) {
        size_t i;
        json_t *rule;
        json_array_foreach(r.rules, i, rule)
        {
            const char *n = json_string_value(json_object_get(rule, "ruleName"));
            if (!n || !ciot__cfn_rule_name_valid(n, strlen(n)) ||
                !json_is_object(json_object_get(rule, "topicRulePayload")))
                abort();
        }
        ciot__cfn_result_free(&r);
    } else if (rc != CIOT_EINVAL && rc != CIOT_EDEPTH && rc != CIOT_ENOMEM) {
        abort();
    } else if (memchr(err, '\0', sizeof err) == NULL) {
        abort();
    }
    return 0;
}
