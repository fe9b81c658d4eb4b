/** @file export.h  Symbol visibility for the public API. */
#ifndef MQE2E_EXPORT_H
#define MQE2E_EXPORT_H
#if defined(__GNUC__) || defined(__clang__)
#define MQE2E_API __attribute__((visibility("default")))
#else
#define MQE2E_API
#endif
#endif
