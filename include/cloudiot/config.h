/**
 * @file config.h
 * @brief Connection settings for a ciot_client: an opaque object with typed
 *        setters keyed by an option enum.
 *
 * New options are new enum values, never new signatures, so the ABI does not
 * change when the library learns a setting. Each setter checks its value and,
 * when it refuses one, leaves the previous value in place and says why in
 * ciot_config_errmsg(). Settings that depend on each other (a certificate
 * needs its key) are checked when a client is made from the config.
 *
 * A config is not used by the clients made from it after ciot_client_new()
 * returns (the client copies what it needs), so it may be changed or freed
 * then. One config must not be used by two threads at once.
 */
#ifndef CLOUDIOT_CONFIG_H
#define CLOUDIOT_CONFIG_H

#include <cloudiot/common.h>

CIOT_BEGIN_DECLS

typedef struct ciot_config ciot_config;

/** The type of an option's value: which setter takes it. */
typedef enum ciot_opt_type {
    CIOT_OPT_TYPE_INT = 1,   /**< ciot_config_set_int() */
    CIOT_OPT_TYPE_STRING = 2, /**< ciot_config_set_str() */
    CIOT_OPT_TYPE_BYTES = 3  /**< ciot_config_set_bytes() */
} ciot_opt_type;

/** Drop policies of the offline queue (CIOT_OPT_QUEUE_DROP_POLICY). */
typedef enum ciot_drop_policy {
    CIOT_DROP_OLDEST = 0, /**< make room by dropping the oldest queued message (default) */
    CIOT_DROP_NEWEST = 1, /**< keep what is queued; the new message is dropped */
    CIOT_DROP_REFUSE = 2  /**< ciot_client_publish() fails with CIOT_EQUEUE_FULL */
} ciot_drop_policy;

/** When the disk journal is flushed to stable storage (CIOT_OPT_PERSIST_SYNC). */
typedef enum ciot_sync_policy {
    CIOT_SYNC_NONE = 0,     /**< never asked; the OS writes when it likes */
    CIOT_SYNC_INTERVAL = 1, /**< at most CIOT_OPT_PERSIST_SYNC_MS after a write (default) */
    CIOT_SYNC_ALWAYS = 2    /**< before ciot_client_publish() returns: survives kill -9 and power loss */
} ciot_sync_policy;

/** Cloud backends (CIOT_OPT_BACKEND): topic layout, limits and connection defaults. */
typedef enum ciot_backend {
    CIOT_BACKEND_MQTT = 1, /**< any MQTT broker: no limits beyond MQTT's, the config as it is (default) */
    CIOT_BACKEND_AWS = 2,  /**< AWS IoT Core: TLS, port 8883 (443 with ALPN), SNI, keep-alive 30..1200 s,
                                AWS's limits on client ids, topics and payloads (doc/aws.md) */
    CIOT_BACKEND_AZURE = 3 /**< Azure IoT Hub: identity from CIOT_OPT_AZURE_CONNECTION_STRING, TLS on 8883,
                                MQTT 3.1.1, SAS tokens renewed by reconnecting (doc/azure.md) */
} ciot_backend;

/**
 * The options. Values are fixed forever; new ones are added at the end.
 * Defaults in brackets.
 */
typedef enum ciot_opt {
    /* -- endpoint and session -- */
    CIOT_OPT_HOST = 1,            /**< string: host name or address [none: required] */
    CIOT_OPT_PORT = 2,            /**< int 1..65535 [1883, or 8883 with TLS] */
    CIOT_OPT_CLIENT_ID = 3,       /**< string, 1..65535 bytes of UTF-8 [none: required] */
    CIOT_OPT_KEEPALIVE_S = 4,     /**< int 0 (off) or 5..65535 seconds [60] */
    CIOT_OPT_CLEAN_SESSION = 5,   /**< int 0/1 [1] */
    CIOT_OPT_PROTOCOL = 6,        /**< int: 4 = MQTT 3.1.1, 5 = MQTT 5 [4] */
    CIOT_OPT_USERNAME = 7,        /**< string [none] */
    CIOT_OPT_PASSWORD = 8,        /**< string [none]; never logged, wiped when freed */
    /* -- TLS -- */
    CIOT_OPT_TLS = 9,                  /**< int 0/1: use TLS [0; set to 1 by any TLS file option; 1 with CIOT_BACKEND_AWS] */
    CIOT_OPT_TLS_CA_FILE = 10,         /**< string: PEM file of trusted CAs [the system's store] */
    CIOT_OPT_TLS_CA_DIR = 11,          /**< string: directory of hashed CA certificates */
    CIOT_OPT_TLS_CERT_FILE = 12,       /**< string: PEM client certificate (chain) */
    CIOT_OPT_TLS_KEY_FILE = 13,        /**< string: PEM private key of that certificate */
    CIOT_OPT_TLS_ALPN = 14,            /**< string: one ALPN protocol, 1..255 bytes (AWS on 443: "x-amzn-mqtt-ca") */
    CIOT_OPT_TLS_SNI = 15,             /**< string: server name sent and verified [CIOT_OPT_HOST] */
    CIOT_OPT_TLS_MIN_VERSION = 16,     /**< int: 12 = TLS 1.2, 13 = TLS 1.3 [12] */
    CIOT_OPT_TLS_INSECURE_SKIP_VERIFY = 17, /**< int 0/1: do not verify the server at all [0]; for tests only */
    /* -- will -- */
    CIOT_OPT_WILL_TOPIC = 18,     /**< string: a valid topic name [no will] */
    CIOT_OPT_WILL_PAYLOAD = 19,   /**< bytes, up to 65535 [empty] */
    CIOT_OPT_WILL_QOS = 20,       /**< int 0..1 [0] */
    CIOT_OPT_WILL_RETAIN = 21,    /**< int 0/1 [0] */
    /* -- reconnect (full jitter: a random delay in [0, min(max, base * 2^attempt)]) -- */
    CIOT_OPT_RECONNECT = 22,           /**< int 0/1: reconnect after a loss [1] */
    CIOT_OPT_RECONNECT_BASE_MS = 23,   /**< int 1..3600000 [1000] */
    CIOT_OPT_RECONNECT_MAX_MS = 24,    /**< int base..86400000 [32000] */
    CIOT_OPT_RECONNECT_STABLE_MS = 25, /**< int 0..86400000: connected this long resets the backoff [20000] */
    /* -- offline queue -- */
    CIOT_OPT_QUEUE_MAX_MESSAGES = 26, /**< int 1..10000000 [10000] */
    CIOT_OPT_QUEUE_MAX_BYTES = 27,    /**< int 1..2^40, topic + payload bytes [16 MiB] */
    CIOT_OPT_QUEUE_DROP_POLICY = 28,  /**< int: a ciot_drop_policy [CIOT_DROP_OLDEST] */
    CIOT_OPT_QUEUE_DRAIN_RATE = 29,   /**< int 0..1000000 messages per second after reconnect; 0 = unlimited [0] */
    /* -- disk persistence of unacknowledged QoS 1 messages -- */
    CIOT_OPT_PERSIST_DIR = 30,        /**< string: directory of the journal [none: memory only] */
    CIOT_OPT_PERSIST_SYNC = 31,       /**< int: a ciot_sync_policy [CIOT_SYNC_INTERVAL] */
    CIOT_OPT_PERSIST_SYNC_MS = 32,    /**< int 1..60000 for CIOT_SYNC_INTERVAL [200] */
    /* -- timeouts -- */
    CIOT_OPT_CONNECT_TIMEOUT_MS = 33,    /**< int 1..600000: TCP + TLS + CONNACK [10000] */
    CIOT_OPT_OPERATION_TIMEOUT_MS = 34,  /**< int 1..3600000: a SUBACK or UNSUBACK [10000] */
    CIOT_OPT_DISCONNECT_TIMEOUT_MS = 35, /**< int 0..600000: ciot_client_disconnect() waits for acks this long [2000] */
    CIOT_OPT_MAX_INFLIGHT = 36,          /**< int 1..65535: QoS 1 messages sent and not yet acknowledged [100] */
    CIOT_OPT_TCP_NODELAY = 37,           /**< int 0/1 [1] */
    /* -- cloud backend (doc/aws.md) -- */
    CIOT_OPT_BACKEND = 38,            /**< int: a ciot_backend [CIOT_BACKEND_MQTT]; the backend sets its own
                                           defaults and limits when the client is made */
    CIOT_OPT_TELEMETRY_TOPIC = 39,    /**< string: topic template of ciot_telemetry_send(), with the
                                           placeholders {thing} and {sensorType} [the backend's: AWS
                                           "sensors/{thing}/{sensorType}", MQTT "devices/{thing}/telemetry/{sensorType}"] */
    CIOT_OPT_THING_NAME = 40,         /**< string: the device's name in topics and payloads (AWS thing name),
                                           1..128 bytes of [a-zA-Z0-9:_-] [CIOT_OPT_CLIENT_ID] */
    CIOT_OPT_REQUEST_TIMEOUT_MS = 41, /**< int 1..3600000: a shadow request gets its answer within this
                                           time or ends with CIOT_ETIMEDOUT [10000] */
    /* -- Azure IoT Hub (CIOT_BACKEND_AZURE, doc/azure.md) -- */
    CIOT_OPT_AZURE_CONNECTION_STRING = 42, /**< string: the device's connection string
                                           `HostName=..;DeviceId=..;SharedAccessKey=..` (or ModuleId,
                                           GatewayHostName, SharedAccessSignature, x509=true); a secret:
                                           never logged, cannot be read back, wiped when freed [none] */
    CIOT_OPT_SAS_TOKEN_LIFETIME_S = 43, /**< int 1..31536000: lifetime of each SAS token the client signs
                                           with the SharedAccessKey [3600] */
    CIOT_OPT_SAS_RENEW_PERCENT = 44,   /**< int 1..99: the client reconnects with a fresh token when this
                                           share of the lifetime has passed [80] */
    CIOT_OPT_MAX_ /**< one past the last option; grows when options are added, so it is not
                       part of the ABI: do not store it (bindings: use ciot_config_option_name()) */
} ciot_opt;

/**
 * Makes a config with every option at its default.
 * @param[out] out the new config; free it with ciot_config_free()
 * @retval 0           done
 * @retval CIOT_EINVAL @p out is NULL
 * @retval CIOT_ENOMEM out of memory
 */
CIOT_API CIOT_NODISCARD int ciot_config_new(ciot_config **out);

/** Frees a config; wipes the password first. NULL is accepted. */
CIOT_API void ciot_config_free(ciot_config *cfg);

/**
 * Sets an integer option.
 * @retval 0                    done
 * @retval CIOT_EINVAL          @p cfg is NULL
 * @retval CIOT_EUNKNOWN_OPTION @p opt is not an option
 * @retval CIOT_ETYPE           @p opt does not take an integer
 * @retval CIOT_ERANGE          @p value is outside the option's range (ciot_config_errmsg() says which)
 */
CIOT_API CIOT_NODISCARD int ciot_config_set_int(ciot_config *cfg, int opt, int64_t value);

/**
 * Sets a string option; the string is copied. NULL clears it (back to the default).
 * @retval 0                    done
 * @retval CIOT_EINVAL          @p cfg is NULL, or the value is not acceptable
 *                              (empty, not UTF-8, an invalid topic, ...: see ciot_config_errmsg())
 * @retval CIOT_EUNKNOWN_OPTION @p opt is not an option
 * @retval CIOT_ETYPE           @p opt does not take a string
 * @retval CIOT_ERANGE          the string is longer than the option allows
 * @retval CIOT_ENOMEM          out of memory
 */
CIOT_API CIOT_NODISCARD int ciot_config_set_str(ciot_config *cfg, int opt, const char *value);

/**
 * Sets a bytes option (the will payload); the bytes are copied.
 * @p data may be NULL when @p len is 0. Return values as ciot_config_set_str().
 */
CIOT_API CIOT_NODISCARD int ciot_config_set_bytes(ciot_config *cfg, int opt, const void *data,
                                                  size_t len);

/**
 * Reads an integer option (its default when never set).
 * @retval 0, CIOT_EINVAL, CIOT_EUNKNOWN_OPTION, CIOT_ETYPE as the setter
 */
CIOT_API CIOT_NODISCARD int ciot_config_get_int(const ciot_config *cfg, int opt, int64_t *out);

/**
 * Reads a string option: *out is borrowed (valid until the option changes or
 * the config is freed) and NULL when unset. The password cannot be read back
 * (CIOT_EINVAL).
 */
CIOT_API CIOT_NODISCARD int ciot_config_get_str(const ciot_config *cfg, int opt, const char **out);

/**
 * Why the last call on @p cfg failed, e.g. "CIOT_OPT_PORT: 70000 is outside 1..65535";
 * "" when it did not. Borrowed: valid until the next call on @p cfg. Never
 * contains a password.
 */
CIOT_API const char *ciot_config_errmsg(const ciot_config *cfg);

/**
 * Looks an option up by name, for bindings and configuration files: the name
 * is the enum name without "CIOT_OPT_", in any case ("keepalive_s", "HOST").
 * @param name         the option's name, NUL-terminated
 * @param[out] out_opt  the option
 * @param[out] out_type its ciot_opt_type (may be NULL)
 * @retval 0 found  @retval CIOT_EUNKNOWN_OPTION no such option  @retval CIOT_EINVAL NULL argument
 */
CIOT_API CIOT_NODISCARD int ciot_config_option_by_name(const char *name, int *out_opt, int *out_type);

/** The name of an option ("HOST", "KEEPALIVE_S", ...); NULL for a value that is not an option. */
CIOT_API const char *ciot_config_option_name(int opt);

CIOT_END_DECLS

#endif /* CLOUDIOT_CONFIG_H */
