/* Broker connection options shared by every command that connects: the
 * flags of mosquitto_pub/mosquitto_sub (-h -p -L -u -P --cafile --capath
 * --cert --key --insecure --tls-version -k -i -I -V -c -x --will-*), the
 * per-user options file, and their translation into Paho's connect, SSL and
 * will options. Passwords are read from a file or the environment into
 * guarded memory (-P is accepted, as in mosquitto_pub, but shows in ps). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "cli.h"

#define OPTIONS_LINE_MAX 4096

void cli_broker_args_init(cli_broker_args *b)
{
    memset(b, 0, sizeof *b);
    b->host = "localhost";
    b->keepalive = -1;
    b->session_expiry = -1;
}

/* Strings from the options file and -L live until exit: they are few and
 * small, and several argument sets may point at them. Wiped at exit (the
 * options file may hold a password). */
static char **kept;
static size_t n_kept;

static void free_kept(void)
{
    for (size_t i = 0; i < n_kept; i++) {
        sodium_memzero(kept[i], strlen(kept[i]));
        free(kept[i]);
    }
    free(kept);
    kept = NULL;
    n_kept = 0;
}

void cli_broker_args_free(cli_broker_args *b)
{
    (void)b;
}

static const char *keep(cli_broker_args *b, const char *s, size_t n)
{
    (void)b;
    if (kept == NULL && atexit(free_kept) != 0) return NULL;
    char **no = realloc(kept, (n_kept + 1) * sizeof *no);
    if (no == NULL) return NULL;
    kept = no;
    char *c = malloc(n + 1);
    if (c == NULL) return NULL;
    memcpy(c, s, n);
    c[n] = '\0';
    kept[n_kept++] = c;
    return c;
}

/* -L mqtt(s)://[user[:password]@]host[:port]/topic, as mosquitto_pub/sub. */
static int parse_url(cli_broker_args *b, const char *url)
{
    const char *p;
    if (strncmp(url, "mqtt://", 7) == 0) {
        p = url + 7;
    } else if (strncmp(url, "mqtts://", 8) == 0) {
        p = url + 8;
        b->tls_from_url = 1;
    } else {
        cli_error("-L wants mqtt://[USER[:PASSWORD]@]HOST[:PORT]/TOPIC or mqtts://..., not '%s'",
                  url);
        return -1;
    }
    const char *slash = strchr(p, '/');
    if (slash == NULL || slash[1] == '\0') {
        cli_error("-L: no topic after the host in '%s'", url);
        return -1;
    }
    const char *at = memchr(p, '@', (size_t)(slash - p));
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *uend = colon != NULL ? colon : at;
        if ((b->username = keep(b, p, (size_t)(uend - p))) == NULL) return -1;
        if (colon != NULL &&
            (b->password_arg = keep(b, colon + 1, (size_t)(at - colon - 1))) == NULL)
            return -1;
        p = at + 1;
    }
    const char *colon = memchr(p, ':', (size_t)(slash - p));
    const char *hend = colon != NULL ? colon : slash;
    if (hend == p) {
        cli_error("-L: no host in '%s'", url);
        return -1;
    }
    if ((b->host = keep(b, p, (size_t)(hend - p))) == NULL) return -1;
    if (colon != NULL) {
        const char *port = keep(b, colon + 1, (size_t)(slash - colon - 1));
        if (port == NULL || cli_parse_long(&b->port, port, 1, 65535, "-L port") != 0) return -1;
    }
    if ((b->url_topic = keep(b, slash + 1, strlen(slash + 1))) == NULL) return -1;
    return 0;
}

static int parse_version(cli_broker_args *b, const char *v)
{
    if (strcmp(v, "31") == 0 || strcmp(v, "mqttv31") == 0)
        b->version = MQTTVERSION_3_1;
    else if (strcmp(v, "311") == 0 || strcmp(v, "mqttv311") == 0)
        b->version = MQTTVERSION_3_1_1;
    else if (strcmp(v, "5") == 0 || strcmp(v, "mqttv5") == 0)
        b->version = MQTTVERSION_5;
    else {
        cli_error("-V wants mqttv31, mqttv311 or mqttv5 (or 31, 311, 5), not '%s'", v);
        return -1;
    }
    return 0;
}

int cli_broker_arg(cli_broker_args *b, int id, const char *v)
{
    switch (id) {
    case OPT_HOST:
        b->host = v;
        return 1;
    case OPT_PORT:
        return cli_parse_long(&b->port, v, 1, 65535, "-p") == 0 ? 1 : -1;
    case OPT_URL:
        return parse_url(b, v) == 0 ? 1 : -1;
    case OPT_USERNAME:
        b->username = v;
        return 1;
    case OPT_PASSWORD:
        b->password_arg = v;
        return 1;
    case OPT_PASSWORD_FILE:
        b->password_file = v;
        return 1;
    case OPT_CAFILE:
        b->cafile = v;
        return 1;
    case OPT_CAPATH:
        b->capath = v;
        return 1;
    case OPT_CERT:
        b->cert = v;
        return 1;
    case OPT_TLS_KEY:
        b->key = v;
        return 1;
    case OPT_INSECURE:
        b->insecure = 1;
        return 1;
    case OPT_TLS_OS_CERTS:
        b->os_certs = 1;
        return 1;
    case OPT_CIPHERS:
        b->ciphers = v;
        return 1;
    case OPT_TLS_VERSION:
        if (strcmp(v, "tlsv1.3") == 0 || strcmp(v, "tlsv1.2") == 0 || strcmp(v, "tlsv1.1") == 0 ||
            strcmp(v, "tlsv1") == 0) {
            b->tls_version = v;
            return 1;
        }
        cli_error("--tls-version wants tlsv1.3, tlsv1.2, tlsv1.1 or tlsv1, not '%s'", v);
        return -1;
    case OPT_KEEPALIVE:
        if (cli_parse_long(&b->keepalive, v, 0, 65535, "-k (keep-alive, seconds)") != 0) {
            if (strchr(v, '/') != NULL || strchr(v, '.') != NULL)
                cli_error("-k is the keep-alive interval, as in mosquitto_pub; the keystore is "
                          "-K/--keystore");
            return -1;
        }
        return 1;
    case OPT_ID:
        b->client_id = v;
        return 1;
    case OPT_ID_PREFIX:
        b->id_prefix = v;
        return 1;
    case OPT_PROTOCOL:
        return parse_version(b, v) == 0 ? 1 : -1;
    case OPT_NO_CLEAN:
        b->no_clean = 1;
        return 1;
    case OPT_SESSION_EXPIRY:
        return cli_parse_long(&b->session_expiry, v, 0, 4294967295L, "-x") == 0 ? 1 : -1;
    case OPT_WILL_TOPIC:
        b->will_topic = v;
        return 1;
    case OPT_WILL_PAYLOAD:
        b->will_payload = v;
        return 1;
    case OPT_WILL_QOS:
        return cli_parse_long(&b->will_qos, v, 0, 2, "--will-qos") == 0 ? 1 : -1;
    case OPT_WILL_RETAIN:
        b->will_retain = 1;
        return 1;
    case OPT_DEBUG:
        b->debug = 1;
        return 1;
    case OPT_QUIET:
        b->quiet = 1;
        return 1;
    default:
        return 0;
    }
}

const char *cli_options_file_path(char *buf, size_t cap)
{
    const char *env = getenv("MQE2E_OPTIONS_FILE");
    if (env != NULL) return env[0] != '\0' ? env : NULL;
    const char *xdg = getenv("XDG_CONFIG_HOME");
    int n;
    if (xdg != NULL && xdg[0] != '\0') {
        n = snprintf(buf, cap, "%s/mqe2e", xdg);
    } else {
        const char *home = getenv("HOME");
        if (home == NULL || home[0] == '\0') return NULL;
        n = snprintf(buf, cap, "%s/.config/mqe2e", home);
    }
    return n > 0 && (size_t)n < cap ? buf : NULL;
}

/* Every option the options file may hold, whichever command reads it. */
static const cli_opt all_file_opts[] = {
    CLI_BROKER_OPTS,
    CLI_SESSION_OPTS,
    {0, NULL, 0, 0},
};

static const cli_opt *find_file_opt(const cli_opt *opts, const char *s)
{
    for (const cli_opt *q = opts; q->id != 0; q++) {
        if ((s[0] == '-' && s[1] != '-' && q->short_name != 0 && s[1] == q->short_name &&
             s[2] == '\0') ||
            (s[0] == '-' && s[1] == '-' && q->long_name != NULL &&
             strcmp(s + 2, q->long_name) == 0) ||
            (s[0] != '-' && q->long_name != NULL && strcmp(s, q->long_name) == 0))
            return q;
    }
    return NULL;
}

int cli_broker_load_options(cli_broker_args *b, const cli_opt *opts)
{
    char pathbuf[4096];
    const char *path = cli_options_file_path(pathbuf, sizeof pathbuf);
    if (path == NULL) return CLI_EXIT_OK;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        /* Only an explicitly named file must exist. */
        if (errno == ENOENT && getenv("MQE2E_OPTIONS_FILE") == NULL) return CLI_EXIT_OK;
        cli_error("cannot open options file %s: %s", path, strerror(errno));
        return CLI_EXIT_USAGE;
    }
    struct stat st;
    int private_file = fstat(fileno(f), &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO)) == 0;
    char line[OPTIONS_LINE_MAX];
    unsigned lineno = 0;
    int rc = CLI_EXIT_OK;
    while (rc == CLI_EXIT_OK && fgets(line, sizeof line, f) != NULL) {
        lineno++;
        size_t len = strcspn(line, "\r\n");
        line[len] = '\0';
        char *s = line;
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s == '\0' || *s == '#') continue;
        /* "OPTION [VALUE]": the value is the rest of the line, so paths may hold spaces. */
        char *val = s + strcspn(s, " \t=");
        if (*val != '\0') {
            *val++ = '\0';
            while (*val == ' ' || *val == '\t' || *val == '=')
                val++;
            size_t vl = strlen(val);
            while (vl > 0 && (val[vl - 1] == ' ' || val[vl - 1] == '\t'))
                val[--vl] = '\0';
        }
        const cli_opt *o = find_file_opt(opts, s);
        if (o == NULL || o->id < OPT_HOST || o->id >= OPT_BROKER_END) {
            /* A session option (-i, --will-topic, ...) is for pub and sub only:
             * the commands whose client id the ACL fixes skip it. */
            if (find_file_opt(all_file_opts, s) != NULL) continue;
            cli_error("options file %s line %u: '%s' is not a broker option", path, lineno, s);
            rc = CLI_EXIT_USAGE;
            break;
        }
        if (o->has_arg && *val == '\0') {
            cli_error("options file %s line %u: %s needs a value", path, lineno, s);
            rc = CLI_EXIT_USAGE;
            break;
        }
        if (o->id == OPT_PASSWORD && !private_file) {
            cli_error("options file %s holds a password but is accessible by group or others "
                      "(chmod 600 it)",
                      path);
            rc = CLI_EXIT_KEY;
            break;
        }
        const char *value = o->has_arg ? keep(b, val, strlen(val)) : NULL;
        if (o->has_arg && value == NULL) {
            cli_error("out of memory");
            rc = CLI_EXIT_USAGE;
            break;
        }
        if (cli_broker_arg(b, o->id, value) < 0) {
            cli_error("(in options file %s line %u)", path, lineno);
            rc = CLI_EXIT_USAGE;
        }
    }
    sodium_memzero(line, sizeof line);
    fclose(f);
    return rc;
}

int cli_broker_tls(const cli_broker_args *b)
{
    return b->cafile != NULL || b->capath != NULL || b->os_certs || b->cert != NULL ||
           b->tls_from_url || b->insecure || b->tls_version != NULL;
}

long cli_broker_port(const cli_broker_args *b)
{
    if (b->port > 0) return b->port;
    return cli_broker_tls(b) ? 8883L : 1883L;
}

/* Paho hands OpenSSL's error queue here (struct_version >= 3); keep the last line. */
static int on_ssl_error(const char *str, size_t len, void *u)
{
    cli_broker_conn *c = u;
    if (len >= sizeof c->ssl_error) len = sizeof c->ssl_error - 1;
    memcpy(c->ssl_error, str, len);
    c->ssl_error[len] = '\0';
    while (len > 0 && (c->ssl_error[len - 1] == '\n' || c->ssl_error[len - 1] == '\r'))
        c->ssl_error[--len] = '\0';
    /* OpenSSL 3: "HEX:error:CODE:LIBRARY:FUNCTION:REASON:FILE:LINE:": keep the reason. */
    char *f = c->ssl_error;
    for (int i = 0; i < 5 && f != NULL; i++) {
        f = strchr(f, ':');
        if (f != NULL) f++;
    }
    if (f != NULL && *f != '\0') {
        size_t n = strcspn(f, ":");
        memmove(c->ssl_error, f, n);
        c->ssl_error[n] = '\0';
    }
    return 0;
}

static int read_password(cli_broker_conn *c, const cli_broker_args *b)
{
    size_t len = 0;
    int rc;
    if (b->password_file != NULL) {
        rc = cli_secret_from_file(&c->password, &len, b->password_file, "password");
        return rc;
    }
    if (b->password_arg != NULL) {
        len = strlen(b->password_arg);
        c->password = sodium_malloc(len + 1);
        if (c->password == NULL) {
            cli_error("out of memory");
            return CLI_EXIT_KEY;
        }
        memcpy(c->password, b->password_arg, len + 1);
        return CLI_EXIT_OK;
    }
    rc = cli_secret_from_env(&c->password, &len, "MQE2E_BROKER_PASSWORD");
    if (rc == 1) {
        c->password = NULL;
        return CLI_EXIT_OK;
    }
    return rc;
}

int cli_broker_prepare(cli_broker_conn *c, const cli_broker_args *b, int keepalive_default)
{
    memset(c, 0, sizeof *c);
    int tls = cli_broker_tls(b);
    if (b->key != NULL && b->cert == NULL) {
        cli_error("--key needs --cert (the client certificate)");
        return CLI_EXIT_USAGE;
    }
    if (b->cert != NULL && b->key == NULL) {
        cli_error("--cert needs --key (the client certificate's private key)");
        return CLI_EXIT_USAGE;
    }
    if (b->will_payload != NULL && b->will_topic == NULL) {
        cli_error("--will-payload needs --will-topic");
        return CLI_EXIT_USAGE;
    }
    if (b->will_topic != NULL && !mqe2e_topic_name_valid(b->will_topic)) {
        cli_error("'%s' is not a valid will topic", b->will_topic);
        return CLI_EXIT_USAGE;
    }
    if (b->session_expiry >= 0 && b->version != MQTTVERSION_5) {
        cli_error("-x (session expiry) needs MQTT v5 (-V mqttv5)");
        return CLI_EXIT_USAGE;
    }
    int n = snprintf(c->uri, sizeof c->uri, "%s://%s:%ld", tls ? "ssl" : "tcp", b->host,
                     cli_broker_port(b));
    if (n < 0 || (size_t)n >= sizeof c->uri) {
        cli_error("host name too long");
        return CLI_EXIT_USAGE;
    }
    int rc = read_password(c, b);
    if (rc != CLI_EXIT_OK) return rc;
    if (c->password != NULL && b->username == NULL) {
        cli_error("a broker password needs a user name (-u USER)");
        cli_broker_conn_free(c);
        return CLI_EXIT_USAGE;
    }

    MQTTClient_connectOptions co = MQTTClient_connectOptions_initializer;
    MQTTClient_connectOptions co5 = MQTTClient_connectOptions_initializer5;
    if (b->version == MQTTVERSION_5) co = co5;
    c->co = co;
    c->co.keepAliveInterval = (int)(b->keepalive >= 0 ? b->keepalive : keepalive_default);
    c->co.connectTimeout = 10;
    if (b->version == MQTTVERSION_5)
        c->co.cleanstart = !b->no_clean;
    else
        c->co.cleansession = !b->no_clean;
    if (b->version != 0 && b->version != MQTTVERSION_5) c->co.MQTTVersion = b->version;
    c->co.username = b->username;
    c->co.password = c->password;
    if (tls) {
        MQTTClient_SSLOptions ssl = MQTTClient_SSLOptions_initializer;
        c->ssl = ssl;
        c->ssl.trustStore = b->cafile;
        c->ssl.CApath = b->capath;
        c->ssl.keyStore = b->cert;
        c->ssl.privateKey = b->key;
        c->ssl.enabledCipherSuites = b->ciphers;
        /* --insecure, as in mosquitto: the chain is still checked, the host name is not. */
        c->ssl.enableServerCertAuth = 1;
        c->ssl.verify = b->insecure ? 0 : 1;
        c->ssl.sslVersion = MQTT_SSL_VERSION_DEFAULT;
        if (b->tls_version != NULL) {
            if (strcmp(b->tls_version, "tlsv1.2") == 0 || strcmp(b->tls_version, "tlsv1.3") == 0)
                c->ssl.sslVersion = MQTT_SSL_VERSION_TLS_1_2;
            else if (strcmp(b->tls_version, "tlsv1.1") == 0)
                c->ssl.sslVersion = MQTT_SSL_VERSION_TLS_1_1;
            else
                c->ssl.sslVersion = MQTT_SSL_VERSION_TLS_1_0;
        }
        c->ssl.ssl_error_cb = on_ssl_error;
        c->ssl.ssl_error_context = c;
        c->co.ssl = &c->ssl;
    }
    if (b->will_topic != NULL) {
        MQTTClient_willOptions w = MQTTClient_willOptions_initializer;
        c->will = w;
        c->will.topicName = b->will_topic;
        /* A zero-length will: the payload field, not the string message. */
        c->will.message = NULL;
        c->will.payload.data = b->will_payload != NULL ? b->will_payload : "";
        c->will.payload.len = b->will_payload != NULL ? (int)strlen(b->will_payload) : 0;
        c->will.qos = (int)b->will_qos;
        c->will.retained = b->will_retain;
        c->co.will = &c->will;
    }
    if (b->version == MQTTVERSION_5 && b->session_expiry >= 0) {
        MQTTProperty p;
        memset(&p, 0, sizeof p);
        p.identifier = MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL;
        p.value.integer4 = (unsigned int)b->session_expiry;
        if (MQTTProperties_add(&c->props, &p) != 0) {
            cli_error("cannot add the session expiry property");
            cli_broker_conn_free(c);
            return CLI_EXIT_USAGE;
        }
        c->has_props = 1;
    }
    return CLI_EXIT_OK;
}

void cli_broker_conn_free(cli_broker_conn *c)
{
    if (c->password != NULL) cli_secret_free(c->password);
    c->password = NULL;
    c->co.password = NULL;
    if (c->has_props) MQTTProperties_free(&c->props);
    c->has_props = 0;
}

int cli_broker_client_id(char *out, size_t cap, const cli_broker_args *b, const char *fallback,
                         int add_pid)
{
    int n;
    if (b->client_id != NULL)
        n = snprintf(out, cap, "%s", b->client_id);
    else if (b->id_prefix != NULL)
        n = snprintf(out, cap, "%s%ld", b->id_prefix, (long)getpid());
    else if (add_pid)
        n = snprintf(out, cap, "%s-%ld", fallback, (long)getpid());
    else
        n = snprintf(out, cap, "%s", fallback);
    if (n < 0 || (size_t)n >= cap) {
        cli_error("client id too long");
        return -1;
    }
    return 0;
}

int cli_broker_connect_failed(const cli_broker_conn *c, int rc, const char *what)
{
    const char *reason = NULL;
    int exit_code = CLI_EXIT_BROKER;
    /* MQTT 3.1.1 CONNACK codes come back as positive numbers, v5 reason codes as >= 0x80. */
    switch (rc) {
    case 1:
        reason = "the broker refused the connection: unacceptable protocol version (try -V)";
        break;
    case 2:
        reason = "the broker refused the connection: client id rejected (-i)";
        exit_code = CLI_EXIT_LOGIN;
        break;
    case 3:
        reason = "the broker refused the connection: server unavailable";
        break;
    case 4:
    case 134: /* v5 bad user name or password */
        reason = "the broker refused the login: bad user name or password (-u, --password-file, "
                 "MQE2E_BROKER_PASSWORD)";
        exit_code = CLI_EXIT_LOGIN;
        break;
    case 5:
    case 135: /* v5 not authorized */
        reason = c->co.username != NULL
                     ? "the broker refused the login: not authorized (wrong user name or "
                       "password, or this user may not connect)"
                     : "the broker refused the login: not authorized (it needs a user name and "
                       "password: -u USER and --password-file FILE)";
        exit_code = CLI_EXIT_LOGIN;
        break;
    default:
        break;
    }
    if (reason != NULL) {
        cli_error("cannot connect to %s: %s", c->uri, reason);
        return exit_code;
    }
    if (c->co.ssl != NULL && rc == MQTTCLIENT_FAILURE) {
        if (c->ssl_error[0] != '\0') {
            const char *hint = strstr(c->ssl_error, "certificate verify failed") != NULL
                                   ? " (wrong --cafile/--capath, or the certificate does not name "
                                     "this host: check -h, or --insecure)"
                                   : "";
            cli_error("cannot connect to %s: TLS handshake failed: %s%s", c->uri, c->ssl_error,
                      hint);
        } else {
            cli_error("cannot connect to %s: connection refused or TLS handshake failed (is it a "
                      "TLS listener? check --cafile/--capath and the port)",
                      c->uri);
        }
        return CLI_EXIT_TLS;
    }
    cli_error("cannot connect to %s: %s%s%s", c->uri, what != NULL ? what : "",
              what != NULL ? ": " : "", mqe2e_MQTTClient_strerror(rc));
    return CLI_EXIT_BROKER;
}
