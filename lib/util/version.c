#include "internal.h"

unsigned int ciot_version(void)
{
    return CIOT_VERSION_HEX;
}

const char *ciot_version_string(void)
{
    return CIOT_VERSION_STRING;
}

bool ciot_version_at_least(unsigned int major, unsigned int minor, unsigned int patch)
{
    if (major > 0xff || minor > 0xff || patch > 0xff)
        return false;
    return (unsigned int)CIOT_VERSION_HEX >= ((major << 16) | (minor << 8) | patch);
}
