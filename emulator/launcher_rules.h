/* cloudiot-emulator's topic-rule and CloudFormation sub-commands (launcher_rules.c). */
#ifndef CIOT_EMULATOR_LAUNCHER_RULES_H
#define CIOT_EMULATOR_LAUNCHER_RULES_H

#include <stdbool.h>
#include <stdio.h>

/* Runs cmd when it is one of the rules sub-commands (*status = its exit
 * status) and returns true; false for any other command. */
bool ciot__launcher_rules(const char *cmd, int argc, char **argv, int *status);
/* The usage lines of these sub-commands. */
void ciot__launcher_rules_usage(FILE *f);

#endif
