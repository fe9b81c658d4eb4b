/* What setSecurity does the same way in both fronts: build the protector (with
 * a policy made from the keystore's groups when the caller gave none) and turn
 * the hold-queue options into control-plane limits. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal_plugin.h"
#include "mqe2e/MQTTClient.h"

void mqe2e__session_options_from(mqe2e_session_options *o, int struct_version, size_t max_count,
                                 size_t max_bytes, unsigned max_seconds, unsigned fresh_max)
{
    const mqe2e_session_options init = MQE2E_SESSION_OPTIONS_INIT;
    *o = init;
    /* The hold limits arrived with struct_version 1; 0 keeps the defaults. */
    if (struct_version >= 1) {
        o->hold_count = max_count;
        o->hold_bytes = max_bytes;
        o->hold_seconds = max_seconds;
    }
    /* freshMaxSeconds arrived with struct_version 3. */
    if (struct_version >= 3) o->fresh_max_seconds = fresh_max;
}

int mqe2e__ctl_setup(mqe2e__ctl **out, mqe2e__ctl_host *host,
                     const mqe2e_MQTTClient_securityOptions *o, mqe2e_keystore **ks,
                     int *owns_ks)
{
    mqe2e_session_options so;
    mqe2e_keystore *k = o->keystore;
    int rc;

    if (k == NULL) {
        rc = mqe2e__keystore_open_path(&k, o->keystorePath, o->passphraseEnv, o->passphraseFile);
        if (rc != MQE2E_OK) return rc;
    }
    host->log_level = o->onLog != NULL ? (int)o->logLevel : 0;
    mqe2e__session_options_from(&so, o->struct_version, o->holdMaxCount, o->holdMaxBytes,
                                o->holdMaxSeconds,
                                o->struct_version >= 3 ? o->freshMaxSeconds : 0U);
    so.protector = o->protector;
    /* The spool of the one-call form: next to the keystore file, whose lock
     * (held from here on) makes this process its only user. */
    const char *spool_ks = o->keystore == NULL      ? o->keystorePath
                           : o->struct_version >= 4 ? o->spoolKeystorePath
                                                    : NULL;
    if (spool_ks != NULL && !(o->struct_version >= 4 && o->spoolDisable)) {
        so.spool = malloc(sizeof *so.spool);
        rc = so.spool == NULL
                 ? MQE2E_ERR_NOMEM
                 : mqe2e_spool_file_for_keystore(so.spool, spool_ks,
                                                 o->struct_version >= 4 ? o->spoolMaxCount : 0U,
                                                 o->struct_version >= 4 ? o->spoolMaxBytes : 0U);
        if (rc != MQE2E_OK) {
            free(so.spool);
            if (o->keystore == NULL) mqe2e_keystore_close(k);
            return rc;
        }
    }
    rc = mqe2e__ctl_new(out, host, k, o->policy, &so);
    if (rc != MQE2E_OK) {
        if (o->keystore == NULL) mqe2e_keystore_close(k);
        return rc;
    }
    *ks = k;
    *owns_ks = o->keystore == NULL;
    if (host->log != NULL && host->log_level >= MQE2E_LOG_INFO) {
        char line[400];
        if (mqe2e__ctl_has_control(*out)) host->log(host->ctx, MQE2E_LOG_INFO, "control plane enabled");
        (void)snprintf(line, sizeof line, "security configured for '%s' (%zu policy rules)",
                       mqe2e_keystore_client_id(k), mqe2e_policy_count(mqe2e__ctl_policy(*out)));
        host->log(host->ctx, MQE2E_LOG_INFO, line);
    }
    return MQE2E_OK;
}

/* ------------------------------------------------------------------ */
/* setSecurity's one-call form: open and lock a keystore file.          */


#define SECRET_MAX 1024U

/* First line of a file closed to group and others, into guarded memory. */
static int read_passphrase_file(char **out, size_t *len, const char *path)
{
    struct stat st;
    int rc = MQE2E_ERR_IO;
    char *buf = NULL;
    size_t n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        return MQE2E_ERR_NOT_FOUND;
    }
    if (fstat(fd, &st) != 0) {
        goto out;
    }
    if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        rc = MQE2E_ERR_POLICY;
        goto out;
    }
    buf = sodium_malloc(SECRET_MAX + 1U);
    if (buf == NULL) {
        rc = MQE2E_ERR_NOMEM;
        goto out;
    }
    while (n < SECRET_MAX) {
        ssize_t r = read(fd, buf + n, SECRET_MAX - n);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            goto out;
        }
        if (r == 0) {
            break;
        }
        n += (size_t)r;
    }
    buf[n] = '\0';
    n = strcspn(buf, "\r\n");
    sodium_memzero(buf + n, SECRET_MAX + 1U - n);
    if (n == 0) {
        rc = MQE2E_ERR_INVALID_ARG;
        goto out;
    }
    *out = buf;
    *len = n;
    buf = NULL;
    rc = MQE2E_OK;
out:
    if (buf != NULL) {
        sodium_free(buf);
    }
    (void)close(fd);
    return rc;
}

static int read_passphrase_env(char **out, size_t *len, const char *name)
{
    const char *v = getenv(name);
    size_t n;

    if (v == NULL || v[0] == '\0') {
        return MQE2E_ERR_NOT_FOUND;
    }
    n = strlen(v);
    if (n > SECRET_MAX) {
        return MQE2E_ERR_INVALID_ARG;
    }
    *out = sodium_malloc(n + 1U);
    if (*out == NULL) {
        return MQE2E_ERR_NOMEM;
    }
    memcpy(*out, v, n + 1U);
    *len = n;
    return MQE2E_OK;
}

int mqe2e__keystore_open_path(mqe2e_keystore **ks, const char *path, const char *passphrase_env,
                              const char *passphrase_file)
{
    mqe2e_storage st;
    char *pass = NULL;
    size_t pass_len = 0;
    int rc;

    *ks = NULL;
    if (path == NULL || (passphrase_env == NULL && passphrase_file == NULL)) {
        return MQE2E_ERR_INVALID_ARG;
    }
    /* Guarded memory needs libsodium initialised; a Paho program never did. */
    rc = mqe2e_init();
    if (rc != MQE2E_OK) {
        return rc;
    }
    if (passphrase_file != NULL) {
        rc = read_passphrase_file(&pass, &pass_len, passphrase_file);
    } else {
        rc = read_passphrase_env(&pass, &pass_len, passphrase_env);
    }
    if (rc != MQE2E_OK) {
        return rc;
    }
    /* The file backend locks the keystore (resolved path, one open at a
     * time: MQE2E_ERR_LOCKED otherwise) until mqe2e_keystore_close(). */
    rc = mqe2e_storage_file_passphrase(&st, path, pass, pass_len);
    sodium_free(pass);
    if (rc == MQE2E_OK) {
        rc = mqe2e_keystore_open(ks, st);
    }
    return rc;
}

/* ------------------------------------------------------------------ */
/* Last will: sealed at connect like any publish (both fronts).         */

int mqe2e__will_seal(mqe2e_protector *protector, pthread_mutex_t *lock, const char *topic,
                     const char *message, const void *data, int data_len, uint8_t **buf,
                     size_t *buf_cap, size_t *out_len)
{
    static const uint8_t empty[1] = {0};
    const uint8_t *pt;
    size_t pt_len;
    int rc;

    *buf = NULL;
    *buf_cap = 0;
    *out_len = 0;
    if (message != NULL) {
        pt = (const uint8_t *)message;
        pt_len = strlen(message);
    } else {
        pt = data != NULL ? (const uint8_t *)data : empty;
        pt_len = data_len > 0 ? (size_t)data_len : 0U;
    }
    *buf_cap = mqe2e_protect_bound(pt_len);
    if (*buf_cap < pt_len || *buf_cap > (size_t)INT_MAX) {
        return MQE2E_ERR_TOO_LARGE;
    }
    *buf = malloc(*buf_cap > 0 ? *buf_cap : 1U);
    if (*buf == NULL) {
        return MQE2E_ERR_NOMEM;
    }
    (void)pthread_mutex_lock(lock);
    rc = mqe2e_protect(protector, topic, pt, pt_len, mqe2e__plugin_now(), *buf, *buf_cap, out_len);
    (void)pthread_mutex_unlock(lock);
    return rc;
}

void mqe2e__will_free(uint8_t *buf, size_t cap)
{
    if (buf != NULL) {
        sodium_memzero(buf, cap > 0 ? cap : 1U);
        free(buf);
    }
}
