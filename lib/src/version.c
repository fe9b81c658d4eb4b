/* Library version. */
#include "mqe2e/version.h"

const char *mqe2e_version(void)
{
    return MQE2E_VERSION_STRING;
}
