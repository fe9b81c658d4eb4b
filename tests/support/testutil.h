/* Small helpers shared by the test programs (not part of the library). */
#ifndef MQE2E_TESTUTIL_H
#define MQE2E_TESTUTIL_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

/* Decode a hex string into a malloc()ed buffer; *len set. NULL on bad hex. */
uint8_t *tu_hex_decode(const char *hex, size_t *len);

/* Read a whole file into a malloc()ed NUL-terminated buffer. NULL on error. */
char *tu_read_file(const char *path, size_t *len);

/* Parse a JSON vector file from MQE2E_VECTORS_DIR. Caller cJSON_Delete()s. */
cJSON *tu_load_vectors(const char *file_name);

/* Make a fresh temporary directory; returns a malloc()ed path. */
char *tu_tempdir(void);

/* rm -rf a directory made by tu_tempdir(). */
void tu_rmtree(const char *path);

/* Sleep @p ms milliseconds (polling waits only, never as synchronisation). */
void tu_sleep_ms(long ms);

/* Monotonic milliseconds, for deadlines of polling waits. */
long tu_now_ms(void);

/* 1 in an AddressSanitizer build. ASan keeps freed memory in quarantine and
 * maps shadow memory, so resident-size bounds are only checked without it. */
#if defined(__SANITIZE_ADDRESS__)
#define TU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TU_ASAN 1
#endif
#endif
#ifndef TU_ASAN
#define TU_ASAN 0
#endif

#endif
