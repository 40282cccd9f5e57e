/**
 * @file cloudiot.h
 * @brief Umbrella header: includes every stable public header of libcloudiot.
 */
#ifndef CLOUDIOT_CLOUDIOT_H
#define CLOUDIOT_CLOUDIOT_H

#include <cloudiot/common.h>
#include <cloudiot/version.h>
#include <cloudiot/error.h>
#include <cloudiot/alloc.h>
#include <cloudiot/log.h>
#include <cloudiot/topic.h>
#include <cloudiot/config.h>
#include <cloudiot/client.h>
#include <cloudiot/json.h>
#include <cloudiot/timestamp.h>
#include <cloudiot/azure.h>
#include <cloudiot/telemetry.h>
#include <cloudiot/command.h>
#include <cloudiot/method.h>
#include <cloudiot/shadow.h>
#include <cloudiot/rules.h>

#endif /* CLOUDIOT_CLOUDIOT_H */
