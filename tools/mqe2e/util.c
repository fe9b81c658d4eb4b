#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "cli.h"

static int cli_quiet;

void cli_set_quiet(int quiet)
{
    cli_quiet = quiet;
}

void cli_error(const char *fmt, ...)
{
    va_list ap;
    if (cli_quiet) return;
    va_start(ap, fmt);
    fputs("mqe2e: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void cli_print_hex(const char *label, const uint8_t *data, size_t len)
{
    char hex[2 * 64 + 1];
    if (len > 64) len = 64;
    sodium_bin2hex(hex, sizeof hex, data, len);
    printf("%s%s\n", label, hex);
}

int cli_read_file(uint8_t **out, size_t *out_len, const char *path, size_t max_len)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        cli_error("cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            size_t ncap = cap == 0 ? 4096 : cap * 2;
            if (ncap > max_len + 1) ncap = max_len + 1;
            if (ncap <= cap) {
                cli_error("%s is larger than %zu bytes", path, max_len);
                goto fail;
            }
            uint8_t *nbuf = realloc(buf, ncap);
            if (nbuf == NULL) {
                cli_error("out of memory reading %s", path);
                goto fail;
            }
            buf = nbuf;
            cap = ncap;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0) {
            if (errno == EINTR) continue;
            cli_error("cannot read %s: %s", path, strerror(errno));
            goto fail;
        }
        if (n == 0) break;
        len += (size_t)n;
    }
    close(fd);
    *out = buf;
    *out_len = len;
    return 0;
fail:
    close(fd);
    free(buf);
    return -1;
}

int cli_write_private_file(const char *path, const uint8_t *data, size_t len)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp) {
        cli_error("path too long: %s", path);
        return -1;
    }
    /* O_EXCL + 0600 from the start: the file is never readable by others,
     * and the rename makes a half-written export impossible to observe. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        cli_error("cannot create %s: %s", tmp, strerror(errno));
        return -1;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            goto fail;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0) goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0) goto fail;
    return 0;
fail:
    cli_error("cannot write %s: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    unlink(tmp);
    return -1;
}

uint64_t cli_now(void)
{
    time_t t = time(NULL);
    return t < 0 ? 0U : (uint64_t)t;
}

int cli_exit_for_lib(int code)
{
    (void)code;
    return CLI_EXIT_KEY;
}
