/* A program outside the tree, built with `pkg-config --cflags --libs cloudiot`
 * against an installed copy of the library (tests/abi/check_install.sh). */
#include <cloudiot/cloudiot.h>

#include <stdio.h>
#include <string.h>

int main(void)
{
    if (ciot_version() != CIOT_VERSION_HEX) {
        fprintf(stderr, "header %s, library %s\n", CIOT_VERSION_STRING, ciot_version_string());
        return 1;
    }
    if (strcmp(ciot_err_name(CIOT_EINVAL), "CIOT_EINVAL") != 0)
        return 1;
    printf("cloudiot %s: %s\n", ciot_version_string(), ciot_strerror(CIOT_ENOSPC));
    return 0;
}
