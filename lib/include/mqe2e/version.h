/** @file version.h  Library version. */
#ifndef MQE2E_VERSION_H
#define MQE2E_VERSION_H
#include "mqe2e/export.h"
/** Library version, as a string literal (same value as mqe2e_version()). */
#define MQE2E_VERSION_STRING "0.1.0"
#define MQE2E_FORMAT_VERSION 1 /**< wire format version */
/** @brief Library version string (static). */
MQE2E_API const char *mqe2e_version(void);
#endif
