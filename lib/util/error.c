#include "internal.h"

const char *ciot_strerror(int err)
{
    switch (err) {
    case CIOT_OK:
        return "success";
#define CIOT_ERR_MSG_(name, value, msg) \
    case name:                          \
        return msg;
        CIOT_ERRNO_MAP(CIOT_ERR_MSG_)
#undef CIOT_ERR_MSG_
    default:
        return "unknown error";
    }
}

const char *ciot_err_name(int err)
{
    switch (err) {
    case CIOT_OK:
        return "CIOT_OK";
#define CIOT_ERR_NAME_(name, value, msg) \
    case name:                           \
        return #name;
        CIOT_ERRNO_MAP(CIOT_ERR_NAME_)
#undef CIOT_ERR_NAME_
    default:
        return "CIOT_EUNKNOWN";
    }
}
