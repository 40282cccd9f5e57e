/* cloudiot-emulator's Azure IoT Hub device sub-commands (launcher_azure.c). */
#ifndef CIOT_EMULATOR_LAUNCHER_AZURE_H
#define CIOT_EMULATOR_LAUNCHER_AZURE_H

#include <stdbool.h>
#include <stdio.h>

/* Runs cmd when it is one of the Azure sub-commands (*status = its exit
 * status) and returns true; false for any other command. */
bool ciot__launcher_azure(const char *cmd, int argc, char **argv, int *status);
/* The usage lines of these sub-commands. */
void ciot__launcher_azure_usage(FILE *f);

#endif
