/**
 * @file mqe2e.h
 * @brief Umbrella header for the transport-agnostic core (no MQTT inside).
 */
#ifndef MQE2E_MQE2E_H
#define MQE2E_MQE2E_H
#include "mqe2e/control.h"
#include "mqe2e/credential.h"
#include "mqe2e/envelope.h"
#include "mqe2e/error.h"
#include "mqe2e/hkdf.h"
#include "mqe2e/holdq.h"
#include "mqe2e/keystore.h"
#include "mqe2e/msgmeta.h"
#include "mqe2e/noise.h"
#include "mqe2e/operator.h"
#include "mqe2e/policy.h"
#include "mqe2e/protect.h"
#include "mqe2e/replay.h"
#include "mqe2e/session.h"
#include "mqe2e/spool.h"
#include "mqe2e/storage.h"
#include "mqe2e/version.h"
#endif
