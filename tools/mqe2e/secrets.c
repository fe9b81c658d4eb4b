/* Keystore secrets never come from argv (visible in ps and shell history):
 * only from the environment, a passphrase file or a raw key file. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "cli.h"

#define SECRET_MAX_BYTES 1024U

int cli_keystore_arg(cli_keystore_args *k, int id, const char *value)
{
    switch (id) {
    case OPT_KEYSTORE:
        k->path = value;
        return 1;
    case OPT_PASSPHRASE_FILE:
        k->passphrase_file = value;
        return 1;
    case OPT_KEY_FILE:
        k->key_file = value;
        return 1;
    default:
        return 0;
    }
}

int cli_keystore_args_check(const cli_keystore_args *k)
{
    if (k->path == NULL || k->path[0] == '\0') {
        cli_error("no keystore given (-K KEYSTORE)");
        return CLI_EXIT_USAGE;
    }
    if (k->passphrase_file != NULL && k->key_file != NULL) {
        cli_error("give either --passphrase-file or --key-file, not both");
        return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
}

void cli_secret_free(char *secret)
{
    /* sodium_free() wipes the whole allocation before releasing it. */
    if (secret != NULL) sodium_free(secret);
}

/* First line of a file owned by the user and closed to group and others. */
static int read_secret_file(char **out, size_t *out_len, const char *path, const char *what)
{
    int rc = CLI_EXIT_KEY;
    char *buf = NULL;
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        cli_error("cannot open %s file %s: %s", what, path, strerror(errno));
        return CLI_EXIT_KEY;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        cli_error("cannot stat %s file %s: %s", what, path, strerror(errno));
        goto out;
    }
    if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        cli_error("%s file %s is accessible by group or others (chmod 600 it)", what, path);
        goto out;
    }
    buf = sodium_malloc(SECRET_MAX_BYTES + 1);
    if (buf == NULL) {
        cli_error("out of memory");
        goto out;
    }
    size_t len = 0;
    while (len < SECRET_MAX_BYTES) {
        ssize_t n = read(fd, buf + len, SECRET_MAX_BYTES - len);
        if (n < 0) {
            if (errno == EINTR) continue;
            cli_error("cannot read %s file %s: %s", what, path, strerror(errno));
            goto out;
        }
        if (n == 0) break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    size_t line = strcspn(buf, "\r\n");
    sodium_memzero(buf + line, SECRET_MAX_BYTES + 1 - line);
    if (line == 0) {
        cli_error("%s file %s is empty", what, path);
        goto out;
    }
    *out = buf;
    *out_len = line;
    buf = NULL;
    rc = CLI_EXIT_OK;
out:
    cli_secret_free(buf);
    close(fd);
    return rc;
}

/* Secrets read from the environment once, at start (cli_secrets_from_env()),
 * kept in guarded memory; the variables themselves are wiped and removed so
 * that children, /proc/PID/environ and core files do not carry them. */
static const char *const env_names[] = {"MQE2E_PASSPHRASE", "MQE2E_EXPORT_PASSPHRASE",
                                        "MQE2E_BROKER_PASSWORD"};
static char *env_stash[sizeof env_names / sizeof env_names[0]];

void cli_secrets_from_env(void)
{
    for (size_t i = 0; i < sizeof env_names / sizeof env_names[0]; i++) {
        char *v = getenv(env_names[i]);
        if (v == NULL) continue;
        size_t len = strnlen(v, SECRET_MAX_BYTES + 1U);
        if (v[0] != '\0' && (env_stash[i] = sodium_malloc(len + 1U)) != NULL) {
            memcpy(env_stash[i], v, len);
            env_stash[i][len] = '\0';
        }
        sodium_memzero(v, strlen(v));
        (void)unsetenv(env_names[i]);
    }
}

static const char *env_secret(const char *name)
{
    for (size_t i = 0; i < sizeof env_names / sizeof env_names[0]; i++)
        if (strcmp(env_names[i], name) == 0) return env_stash[i];
    return NULL;
}

static int copy_env_secret(char **out, size_t *out_len, const char *name)
{
    const char *v = env_secret(name);
    if (v == NULL || v[0] == '\0') return 1;
    size_t len = strlen(v);
    if (len > SECRET_MAX_BYTES) {
        cli_error("%s is longer than %u bytes", name, SECRET_MAX_BYTES);
        return CLI_EXIT_KEY;
    }
    char *buf = sodium_malloc(len + 1);
    if (buf == NULL) {
        cli_error("out of memory");
        return CLI_EXIT_KEY;
    }
    memcpy(buf, v, len + 1);
    *out = buf;
    *out_len = len;
    return CLI_EXIT_OK;
}

int cli_secret_from_file(char **out, size_t *out_len, const char *path, const char *what)
{
    return read_secret_file(out, out_len, path, what);
}

int cli_secret_from_env(char **out, size_t *out_len, const char *name)
{
    return copy_env_secret(out, out_len, name);
}

int cli_export_passphrase(char **out, size_t *out_len, const char *file, const char *command)
{
    if (file != NULL) return read_secret_file(out, out_len, file, "export passphrase");
    int rc = copy_env_secret(out, out_len, "MQE2E_EXPORT_PASSPHRASE");
    if (rc == 1) {
        cli_error("%s needs the group file passphrase: set MQE2E_EXPORT_PASSPHRASE or give "
                  "--export-passphrase-file FILE",
                  command);
        return CLI_EXIT_KEY;
    }
    return rc;
}

/* The file backend locks the keystore (one open at a time, any path, any
 * process: docs/KEYSTORE.md); say who holds it. */
static void storage_error(const char *path, int rc)
{
    if (rc != MQE2E_ERR_LOCKED) {
        cli_error("cannot use keystore %s: %s", path, mqe2e_strerror(rc));
        return;
    }
    long pid = 0;
    char holder[512];
    if (mqe2e_storage_file_lock_holder(path, &pid, holder, sizeof holder) == MQE2E_OK)
        cli_error("keystore %s is in use: process %ld opened it as %s (one open at a time; "
                  "stop that process or use another keystore)",
                  path, pid, holder);
    else
        cli_error("keystore %s is in use by another process (one open at a time)", path);
}

/* The storage backend for a keystore path, keyed by the first source given:
 * --key-file, --passphrase-file, then MQE2E_PASSPHRASE. */
static int make_storage(mqe2e_storage *st, const cli_keystore_args *k, const cli_kdf *kdf)
{
    int rc;
    if (k->key_file != NULL) {
        uint8_t key[MQE2E_STORAGE_KEY_BYTES];
        rc = mqe2e_storage_read_key_file(key, k->key_file);
        if (rc == MQE2E_ERR_POLICY) {
            cli_error("key file %s is accessible by group or others (chmod 600 it)", k->key_file);
        } else if (rc != MQE2E_OK) {
            cli_error("cannot read key file %s: %s (want 32 raw bytes or 64 hex digits)",
                      k->key_file, mqe2e_strerror(rc));
        } else {
            rc = mqe2e_storage_file_key(st, k->path, key);
            if (rc != MQE2E_OK) storage_error(k->path, rc);
        }
        sodium_memzero(key, sizeof key);
        return rc == MQE2E_OK ? CLI_EXIT_OK : CLI_EXIT_KEY;
    }
    char *pass = NULL;
    size_t pass_len = 0;
    if (k->passphrase_file != NULL) {
        rc = read_secret_file(&pass, &pass_len, k->passphrase_file, "passphrase");
    } else {
        rc = copy_env_secret(&pass, &pass_len, "MQE2E_PASSPHRASE");
        if (rc == 1) {
            cli_error("no keystore passphrase: set MQE2E_PASSPHRASE or give --passphrase-file "
                      "FILE or --key-file FILE");
            return CLI_EXIT_KEY;
        }
    }
    if (rc != CLI_EXIT_OK) return rc;
    int lrc = mqe2e_storage_file_passphrase(st, k->path, pass, pass_len);
    cli_secret_free(pass);
    if (lrc != MQE2E_OK) {
        storage_error(k->path, lrc);
        return CLI_EXIT_KEY;
    }
    if (kdf != NULL && kdf->opslimit != 0) {
        lrc = mqe2e_storage_file_set_kdf(st, kdf->opslimit, kdf->memlimit);
        if (lrc != MQE2E_OK) {
            cli_error("--kdf: limits refused (floor: 8 MiB and MiB x passes >= 40)");
            if (st->destroy != NULL) st->destroy(st->ctx);
            return CLI_EXIT_USAGE;
        }
    }
    return CLI_EXIT_OK;
}

int cli_keystore_open(cli_keystore *out, const cli_keystore_args *k)
{
    out->ks = NULL;
    out->lock_fd = -1;
    int rc = cli_keystore_args_check(k);
    if (rc != CLI_EXIT_OK) return rc;
    struct stat st;
    if (stat(k->path, &st) != 0) {
        if (errno == ENOENT)
            cli_error("keystore %s does not exist (create it with 'mqe2e keygen')", k->path);
        else
            cli_error("cannot access keystore %s: %s", k->path, strerror(errno));
        return CLI_EXIT_KEY;
    }
    mqe2e_storage storage;
    rc = make_storage(&storage, k, NULL);
    if (rc != CLI_EXIT_OK) goto fail;
    int lrc = mqe2e_keystore_open(&out->ks, storage);
    if (lrc != MQE2E_OK) {
        out->ks = NULL;
        if (lrc == MQE2E_ERR_AUTH)
            cli_error("cannot open keystore %s: wrong passphrase or key, or the file was "
                      "modified",
                      k->path);
        else
            cli_error("cannot open keystore %s: %s", k->path, mqe2e_strerror(lrc));
        rc = CLI_EXIT_KEY;
        goto fail;
    }
    return CLI_EXIT_OK;
fail:
    if (out->lock_fd >= 0) close(out->lock_fd);
    out->lock_fd = -1;
    return rc;
}

int cli_parse_kdf(cli_kdf *out, const char *v)
{
    if (strcmp(v, "default") == 0) {
        out->opslimit = MQE2E_KDF_OPSLIMIT_DEFAULT;
        out->memlimit = MQE2E_KDF_MEMLIMIT_DEFAULT;
        return 0;
    }
    if (strcmp(v, "small") == 0) {
        out->opslimit = MQE2E_KDF_OPSLIMIT_SMALL;
        out->memlimit = MQE2E_KDF_MEMLIMIT_SMALL;
        return 0;
    }
    char *end = NULL;
    errno = 0;
    unsigned long mib = strtoul(v, &end, 10);
    if (errno == 0 && end != v && *end == ':') {
        const char *q = end + 1;
        unsigned long passes = strtoul(q, &end, 10);
        if (errno == 0 && end != q && *end == '\0' && mib >= 1 && mib <= 1024 && passes >= 1 &&
            passes <= MQE2E_KDF_OPSLIMIT_MAX) {
            uint64_t mem = (uint64_t)mib << 20;
            if (mem >= MQE2E_KDF_MEMLIMIT_FLOOR && (uint64_t)passes * mem >= MQE2E_KDF_COST_FLOOR) {
                out->opslimit = passes;
                out->memlimit = mem;
                return 0;
            }
            cli_error("--kdf %s is below the floor (at least 8 MiB, and MiB x passes >= 40)", v);
            return -1;
        }
    }
    cli_error("--kdf wants 'default', 'small' or MIB:PASSES (MIB 8-1024, PASSES 1-16), "
              "not '%s'",
              v);
    return -1;
}

int cli_keystore_create(cli_keystore *out, const cli_keystore_args *k, const char *client_id,
                        uint32_t sender_id)
{
    return cli_keystore_create_kdf(out, k, client_id, sender_id, NULL);
}

int cli_keystore_create_kdf(cli_keystore *out, const cli_keystore_args *k, const char *client_id,
                            uint32_t sender_id, const cli_kdf *kdf)
{
    out->ks = NULL;
    out->lock_fd = -1;
    int rc = cli_keystore_args_check(k);
    if (rc != CLI_EXIT_OK) return rc;
    struct stat st;
    if (stat(k->path, &st) == 0 || errno != ENOENT) {
        cli_error("keystore %s already exists; refusing to overwrite it", k->path);
        rc = CLI_EXIT_KEY;
        goto fail;
    }
    mqe2e_storage storage;
    rc = make_storage(&storage, k, kdf);
    if (rc != CLI_EXIT_OK) goto fail;
    int lrc = mqe2e_keystore_create(&out->ks, storage, client_id, sender_id);
    if (lrc != MQE2E_OK) {
        out->ks = NULL;
        if (lrc == MQE2E_ERR_EXISTS)
            cli_error("keystore %s already exists; refusing to overwrite it", k->path);
        else if (lrc == MQE2E_ERR_INVALID_ARG)
            cli_error("cannot create keystore %s: invalid client id or sender id", k->path);
        else
            cli_error("cannot create keystore %s: %s", k->path, mqe2e_strerror(lrc));
        rc = lrc == MQE2E_ERR_INVALID_ARG ? CLI_EXIT_USAGE : CLI_EXIT_KEY;
        goto fail;
    }
    return CLI_EXIT_OK;
fail:
    if (out->lock_fd >= 0) close(out->lock_fd);
    out->lock_fd = -1;
    return rc;
}

void cli_keystore_close(cli_keystore *c)
{
    mqe2e_keystore_close(c->ks);
    c->ks = NULL;
    if (c->lock_fd >= 0) close(c->lock_fd);
    c->lock_fd = -1;
}

int cli_process_start(void)
{
    if (mqe2e_init() != MQE2E_OK) {
        cli_error("cannot initialise libsodium");
        return CLI_EXIT_KEY;
    }
    /* Keys and passphrases live in this process: no core file, and no
     * ptrace or /proc/PID/mem access by other processes of the same user. */
    struct rlimit no_core = {0, 0};
    (void)setrlimit(RLIMIT_CORE, &no_core);
    (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    cli_secrets_from_env();
    return CLI_EXIT_OK;
}
