/* The counters file (KEYSTORE.stats) and the JSON form of `mqe2e status`.
 *
 * What goes into the file is chosen field by field: counts from
 * mqe2e_counters and mqe2e_control_counters, the time, the pid and the
 * command name. Never argv (pub -m carries a plaintext), topics, payloads or
 * keys. The reader accepts only this writer's keys and plain numbers, so a
 * damaged or hostile file cannot inject anything into status output. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "cli.h"

#define STATS_MAX_BYTES 16384U
#define STATS_VERSION 1U

/* The control counters by name, in header order. Names are unique across the
 * whole file (the reader looks keys up by name). */
typedef struct control_field {
    const char *name;
    size_t offset;
} control_field;

static const control_field control_fields[] = {
    {"handshakes_ok", offsetof(mqe2e_control_counters, handshakes_ok)},
    {"handshakes_failed", offsetof(mqe2e_control_counters, handshakes_failed)},
    {"hellos_sent", offsetof(mqe2e_control_counters, hellos_sent)},
    {"pushes_applied", offsetof(mqe2e_control_counters, pushes_applied)},
    {"pushes_refused", offsetof(mqe2e_control_counters, pushes_refused)},
    {"held", offsetof(mqe2e_control_counters, held)},
    {"released", offsetof(mqe2e_control_counters, released)},
    {"hold_dropped", offsetof(mqe2e_control_counters, hold_dropped)},
    {"revoked_refused", offsetof(mqe2e_control_counters, revoked_refused)},
    {"channel_sent", offsetof(mqe2e_control_counters, channel_sent)},
    {"channel_opened", offsetof(mqe2e_control_counters, channel_opened)},
    {"control_ignored", offsetof(mqe2e_control_counters, control_ignored)},
    {"channel_rate_limited", offsetof(mqe2e_control_counters, channel_rate_limited)},
    {"stale_refused", offsetof(mqe2e_control_counters, stale_refused)},
    {"spooled", offsetof(mqe2e_control_counters, spooled)},
    {"tree_applied", offsetof(mqe2e_control_counters, tree_applied)},
    {"tree_refused", offsetof(mqe2e_control_counters, tree_refused)},
    {"tree_replayed", offsetof(mqe2e_control_counters, tree_replayed)},
    {"tree_gaps", offsetof(mqe2e_control_counters, tree_gaps)},
    {"tree_revoked", offsetof(mqe2e_control_counters, tree_revoked)},
};
#define CONTROL_FIELD_COUNT (sizeof control_fields / sizeof control_fields[0])

static uint64_t *control_at(mqe2e_control_counters *c, size_t i)
{
    return (uint64_t *)(void *)((unsigned char *)c + control_fields[i].offset);
}

static uint64_t control_get(const mqe2e_control_counters *c, size_t i)
{
    uint64_t v;
    memcpy(&v, (const unsigned char *)c + control_fields[i].offset, sizeof v);
    return v;
}

/* One recorded snapshot. */
typedef struct stats_record {
    uint64_t written_at;
    uint64_t pid;
    char command[16];
    int at_exit;
    mqe2e_counters data;
    mqe2e_control_counters control;
} stats_record;

static long monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static int stats_path(char *out, size_t cap, const char *keystore_path)
{
    int n = snprintf(out, cap, "%s.stats", keystore_path);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* ---- JSON writing ---- */

/* Hand-written so the CLI needs no JSON library: quotes, backslashes and
 * control characters are escaped; other bytes pass through. */
static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        switch (*p) {
        case '"':
            fputs("\\\"", f);
            break;
        case '\\':
            fputs("\\\\", f);
            break;
        case '\n':
            fputs("\\n", f);
            break;
        case '\r':
            fputs("\\r", f);
            break;
        case '\t':
            fputs("\\t", f);
            break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                fprintf(f, "\\u%04x", (unsigned)*p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

static void json_hex(FILE *f, const uint8_t *data, size_t len)
{
    char hex[2 * 64 + 1];
    if (len > 64) len = 64;
    sodium_bin2hex(hex, sizeof hex, data, len);
    fprintf(f, "\"%s\"", hex);
}

static void json_u64(FILE *f, const char *key, uint64_t v, int comma)
{
    fprintf(f, "%s\"%s\":%llu", comma ? "," : "", key, (unsigned long long)v);
}

/* The counters object: the same text is the stats file and the "counters"
 * member of `status --json`. */
static void json_record(FILE *f, const stats_record *r)
{
    fputc('{', f);
    json_u64(f, "version", STATS_VERSION, 0);
    json_u64(f, "written_at", r->written_at, 1);
    json_u64(f, "pid", r->pid, 1);
    fputs(",\"command\":", f);
    json_string(f, r->command);
    fprintf(f, ",\"state\":\"%s\"", r->at_exit ? "exited" : "running");
    json_u64(f, "sealed", r->data.sealed, 1);
    json_u64(f, "opened", r->data.opened, 1);
    json_u64(f, "plaintext_out", r->data.plaintext_out, 1);
    json_u64(f, "plaintext_in", r->data.plaintext_in, 1);
    fputs(",\"dropped\":{", f);
    for (int i = 0; i < (int)MQE2E_DROP_REASON_COUNT; i++)
        json_u64(f, mqe2e_drop_reason_name((mqe2e_drop_reason)i), r->data.dropped[i], i > 0);
    fputs("},\"control\":{", f);
    for (size_t i = 0; i < CONTROL_FIELD_COUNT; i++)
        json_u64(f, control_fields[i].name, control_get(&r->control, i), i > 0);
    fputs("}}", f);
}

int cli_stats_write(cli_session *s, int at_exit)
{
    /* A session that never reached the broker has nothing to report and
     * must not replace the last real session's record. */
    if (s == NULL || s->client == NULL || s->command == NULL || s->keystore_path == NULL ||
        !s->connected)
        return 0;
    stats_record r;
    memset(&r, 0, sizeof r);
    if (mqe2e_MQTTClient_getCounters(s->client, &r.data) != MQTTCLIENT_SUCCESS) return 0;
    /* Zero for a keystore that is not enrolled; an error leaves them zero too. */
    (void)mqe2e_MQTTClient_getControlCounters(s->client, &r.control);
    r.written_at = cli_now();
    r.pid = (uint64_t)getpid();
    snprintf(r.command, sizeof r.command, "%s", s->command);
    r.at_exit = at_exit;

    char path[4096];
    if (stats_path(path, sizeof path, s->keystore_path) != 0) {
        cli_error("warning: keystore path too long to record counters");
        return -1;
    }
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (mem == NULL) {
        cli_error("warning: cannot record counters: out of memory");
        return -1;
    }
    json_record(mem, &r);
    fputc('\n', mem);
    if (fclose(mem) != 0 || text == NULL) {
        free(text);
        cli_error("warning: cannot record counters: out of memory");
        return -1;
    }
    /* Temporary file, fsync, rename: a reader sees the old or the new record,
     * never half of one; mode 0600 from creation. */
    int rc = cli_write_private_file(path, (const uint8_t *)text, len);
    free(text);
    s->stats_last_ms = monotonic_ms();
    return rc;
}

void cli_stats_tick(cli_session *s)
{
    long now = monotonic_ms();
    if (s->stats_last_ms == 0) {
        /* First call: start the period, so a short run writes only at exit. */
        s->stats_last_ms = now;
        return;
    }
    if (now - s->stats_last_ms >= CLI_STATS_PERIOD_MS) (void)cli_stats_write(s, 0);
}

/* ---- reading the file back ---- */

/* The value of "key": as a decimal number; -1 if absent or not a number. */
static int find_u64(const char *text, const char *key, uint64_t *out)
{
    char pattern[64];
    int n = snprintf(pattern, sizeof pattern, "\"%s\":", key);
    if (n < 0 || (size_t)n >= sizeof pattern) return -1;
    const char *p = strstr(text, pattern);
    if (p == NULL) return -1;
    p += n;
    while (*p == ' ')
        p++;
    if (*p < '0' || *p > '9') return -1;
    uint64_t v = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - d) / 10U) return -1;
        v = v * 10U + d;
    }
    *out = v;
    return 0;
}

/* The value of "key": as a short lower-case word (the only strings written). */
static int find_word(const char *text, const char *key, char *out, size_t cap)
{
    char pattern[64];
    int n = snprintf(pattern, sizeof pattern, "\"%s\":\"", key);
    if (n < 0 || (size_t)n >= sizeof pattern) return -1;
    const char *p = strstr(text, pattern);
    if (p == NULL) return -1;
    p += n;
    size_t i = 0;
    for (; p[i] != '"'; i++) {
        if (p[i] < 'a' || p[i] > 'z' || i + 1 >= cap) return -1;
        out[i] = p[i];
    }
    out[i] = '\0';
    return i > 0 ? 0 : -1;
}

/* @return 1 loaded, 0 no file, -1 unreadable or not ours (reason in *why). */
static int stats_load(stats_record *r, const char *keystore_path, const char **why)
{
    memset(r, 0, sizeof r[0]);
    *why = NULL;
    char path[4096];
    if (stats_path(path, sizeof path, keystore_path) != 0) {
        *why = "path too long";
        return -1;
    }
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        if (errno == ENOENT) return 0;
        *why = strerror(errno);
        return -1;
    }
    char *text = malloc(STATS_MAX_BYTES + 1);
    if (text == NULL) {
        fclose(f);
        *why = "out of memory";
        return -1;
    }
    size_t len = fread(text, 1, STATS_MAX_BYTES + 1, f);
    int bad = ferror(f) || len > STATS_MAX_BYTES;
    fclose(f);
    int rc = -1;
    if (bad) {
        *why = "unreadable or too large";
        goto out;
    }
    text[len] = '\0';
    uint64_t version = 0;
    char state[16];
    if (find_u64(text, "version", &version) != 0 || version != STATS_VERSION ||
        find_u64(text, "written_at", &r->written_at) != 0 || find_u64(text, "pid", &r->pid) != 0 ||
        find_word(text, "command", r->command, sizeof r->command) != 0 ||
        find_word(text, "state", state, sizeof state) != 0 ||
        find_u64(text, "sealed", &r->data.sealed) != 0 ||
        find_u64(text, "opened", &r->data.opened) != 0 ||
        find_u64(text, "plaintext_out", &r->data.plaintext_out) != 0 ||
        find_u64(text, "plaintext_in", &r->data.plaintext_in) != 0) {
        *why = "not a counters file of this version";
        goto out;
    }
    r->at_exit = strcmp(state, "exited") == 0;
    /* Reasons or fields added later read as absent: they stay zero. */
    for (int i = 0; i < (int)MQE2E_DROP_REASON_COUNT; i++)
        (void)find_u64(text, mqe2e_drop_reason_name((mqe2e_drop_reason)i), &r->data.dropped[i]);
    for (size_t i = 0; i < CONTROL_FIELD_COUNT; i++)
        (void)find_u64(text, control_fields[i].name, control_at(&r->control, i));
    rc = 1;
out:
    free(text);
    return rc;
}

static void format_time(char *out, size_t cap, uint64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (gmtime_r(&tt, &tm) == NULL || strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, cap, "%llu", (unsigned long long)t);
}

void cli_stats_print(const char *keystore_path)
{
    stats_record r;
    const char *why = NULL;
    int rc = stats_load(&r, keystore_path, &why);
    if (rc == 0) {
        printf("counters:           no counters recorded yet\n");
        return;
    }
    if (rc < 0) {
        printf("counters:           cannot read %s.stats: %s\n", keystore_path, why);
        return;
    }
    char when[64];
    format_time(when, sizeof when, r.written_at);
    printf("counters:           recorded %s by 'mqe2e %s' (pid %llu, %s)\n", when, r.command,
           (unsigned long long)r.pid, r.at_exit ? "at exit" : "while running");
    printf("  %-26s %llu\n", "sealed", (unsigned long long)r.data.sealed);
    printf("  %-26s %llu\n", "opened", (unsigned long long)r.data.opened);
    printf("  %-26s %llu\n", "plaintext_out", (unsigned long long)r.data.plaintext_out);
    printf("  %-26s %llu\n", "plaintext_in", (unsigned long long)r.data.plaintext_in);
    for (int i = 0; i < (int)MQE2E_DROP_REASON_COUNT; i++) {
        char label[48];
        snprintf(label, sizeof label, "dropped.%s", mqe2e_drop_reason_name((mqe2e_drop_reason)i));
        printf("  %-26s %llu\n", label, (unsigned long long)r.data.dropped[i]);
    }
    for (size_t i = 0; i < CONTROL_FIELD_COUNT; i++) {
        char label[48];
        snprintf(label, sizeof label, "control.%s", control_fields[i].name);
        printf("  %-26s %llu\n", label, (unsigned long long)control_get(&r.control, i));
    }
}

/* ---- enrollment facts (public) ---- */

/* Credential expiry: 1 and *expires_at when it verifies now, 0 when the
 * keystore holds none, -1 when it no longer verifies (expired or damaged). */
static int credential_expiry(const mqe2e_keystore *ks, const mqe2e_authority_pin *pin,
                             uint64_t *expires_at, int *code)
{
    const uint8_t *cred = NULL;
    size_t cred_len = 0;
    if (mqe2e_keystore_credential(ks, &cred, &cred_len) != MQE2E_OK) return 0;
    mqe2e_credential *c = NULL;
    *code = mqe2e_credential_verify(&c, cred, cred_len, pin->sign_public, cli_now());
    if (*code != MQE2E_OK) return -1;
    *expires_at = mqe2e_credential_expires_at(c);
    mqe2e_credential_free(c);
    return 1;
}

void cli_status_print_enrollment(const mqe2e_keystore *ks)
{
    mqe2e_authority_pin pin;
    if (mqe2e_keystore_authority(ks, &pin) != MQE2E_OK) return;
    printf("authority:          %s\n", pin.authority_id);
    cli_print_hex("authority key:      ", pin.sign_public, sizeof pin.sign_public);
    uint64_t expires_at = 0;
    int code = MQE2E_OK;
    int c = credential_expiry(ks, &pin, &expires_at, &code);
    if (c > 0) {
        char when[64];
        format_time(when, sizeof when, expires_at);
        printf("credential expires: %s\n", when);
    } else if (c < 0) {
        printf("credential:         not valid now (%s)\n", mqe2e_strerror(code));
    } else {
        printf("credential:         none\n");
    }
}

void cli_status_print_json(const mqe2e_keystore *ks, const char *keystore_path)
{
    FILE *f = stdout;
    fputs("{\"keystore\":", f);
    json_string(f, keystore_path);
    fputs(",\"client_id\":", f);
    json_string(f, mqe2e_keystore_client_id(ks));
    json_u64(f, "sender_id", mqe2e_keystore_sender_id(ks), 1);
    uint8_t sign_pk[MQE2E_SIGN_PUBLIC_BYTES];
    uint8_t dh_pk[MQE2E_DH_PUBLIC_BYTES];
    if (mqe2e_keystore_identity_public(ks, sign_pk, dh_pk) == MQE2E_OK) {
        fputs(",\"signing_public_key\":", f);
        json_hex(f, sign_pk, sizeof sign_pk);
        fputs(",\"x25519_public_key\":", f);
        json_hex(f, dh_pk, sizeof dh_pk);
    }

    fputs(",\"groups\":[", f);
    size_t n = mqe2e_keystore_group_count(ks);
    int first = 1;
    for (size_t i = 0; i < n; i++) {
        const char *name = mqe2e_keystore_group_name(ks, i);
        if (name == NULL) continue;
        const char *filter = mqe2e_keystore_group_filter(ks, name);
        uint32_t epoch = 0, sender = 0;
        (void)mqe2e_keystore_group_current_epoch(ks, name, &epoch);
        (void)mqe2e_keystore_group_sender_id(ks, name, &sender);
        fputs(first ? "{\"name\":" : ",{\"name\":", f);
        first = 0;
        json_string(f, name);
        fputs(",\"topic\":", f);
        if (filter != NULL)
            json_string(f, filter);
        else
            fputs("null", f);
        json_u64(f, "epoch", epoch, 1);
        json_u64(f, "sender_id", sender, 1);
        fputs(mqe2e_keystore_group_is_signed(ks, name) ? ",\"signed\":true" : ",\"signed\":false",
              f);
        json_u64(f, "signers", mqe2e_keystore_signer_count(ks, name), 1);
        fputc('}', f);
    }
    fputc(']', f);

    mqe2e_authority_pin pin;
    if (mqe2e_keystore_authority(ks, &pin) == MQE2E_OK) {
        fputs(",\"authority\":{\"id\":", f);
        json_string(f, pin.authority_id);
        fputs(",\"control_prefix\":", f);
        json_string(f, pin.control_prefix);
        fputs(",\"signing_public_key\":", f);
        json_hex(f, pin.sign_public, sizeof pin.sign_public);
        fputc('}', f);
        uint64_t expires_at = 0;
        int code = MQE2E_OK;
        int c = credential_expiry(ks, &pin, &expires_at, &code);
        if (c > 0) {
            fputs(",\"credential\":{\"valid\":true", f);
            json_u64(f, "expires_at", expires_at, 1);
            fputc('}', f);
        } else if (c < 0) {
            fputs(",\"credential\":{\"valid\":false,\"reason\":", f);
            json_string(f, mqe2e_strerror(code));
            fputc('}', f);
        } else {
            fputs(",\"credential\":null", f);
        }
    } else {
        fputs(",\"authority\":null,\"credential\":null", f);
    }

    stats_record r;
    const char *why = NULL;
    int rc = stats_load(&r, keystore_path, &why);
    fputs(",\"counters\":", f);
    if (rc > 0) {
        json_record(f, &r);
    } else if (rc == 0) {
        fputs("null", f);
    } else {
        fputs("{\"error\":", f);
        json_string(f, why);
        fputc('}', f);
    }
    fputs("}\n", f);
}
