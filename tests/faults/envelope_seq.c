/*
 * Reads captured MQTT payloads, one hex string per line (mosquitto_sub -F
 * '%x'), and prints "sender epoch seq" for each data envelope, using only the
 * library's public parser. Lines that do not parse are counted on stderr and
 * make the exit code 1, so a corrupt capture cannot pass unnoticed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqe2e/mqe2e.h"

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int main(void)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    unsigned long parsed = 0, bad = 0;
    uint8_t *buf = NULL;
    size_t buf_cap = 0;

    while ((n = getline(&line, &cap, stdin)) >= 0) {
        size_t len = (size_t)n;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' '))
            len--;
        if (len == 0) continue;
        if (len % 2 != 0) {
            bad++;
            continue;
        }
        if (len / 2 > buf_cap) {
            free(buf);
            buf_cap = len / 2;
            buf = malloc(buf_cap);
            if (buf == NULL) return 2;
        }
        int ok = 1;
        for (size_t i = 0; i < len / 2; i++) {
            int hi = hexval(line[2 * i]), lo = hexval(line[2 * i + 1]);
            if (hi < 0 || lo < 0) {
                ok = 0;
                break;
            }
            buf[i] = (uint8_t)(hi << 4 | lo);
        }
        mqe2e_envelope_view v;
        if (!ok || mqe2e_envelope_parse(&v, buf, len / 2) != MQE2E_OK) {
            bad++;
            continue;
        }
        printf("%lu %lu %llu\n", (unsigned long)v.header.sender_id,
               (unsigned long)v.header.epoch, (unsigned long long)v.header.seq);
        parsed++;
    }
    free(line);
    free(buf);
    fprintf(stderr, "envelope_seq: %lu envelopes, %lu unparsable lines\n", parsed, bad);
    return bad == 0 ? 0 : 1;
}
