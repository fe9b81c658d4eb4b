/*
 * mqe2e_v5_peer: the C side of python/tests/test_v5_bind.py. An MQTT v5
 * client of the encrypted synchronous front (plugin/) that publishes one
 * message with the properties it is given, or prints every message (and
 * drop) it receives with its properties, so the Python binding's bound
 * properties (docs/PROTOCOL.md 2.5.1) can be checked against the C fronts.
 *
 *   mqe2e_v5_peer pub KEYSTORE PORT TOPIC RULE PAYLOAD RETAIN [PROP...]
 *   mqe2e_v5_peer sub KEYSTORE PORT FILTER RULE COUNT SECONDS
 *
 * PROP: ct=TEXT (content type), pf=N (payload format), rt=TEXT (response
 * topic), cd=TEXT (correlation data), u:NAME=VALUE (a user property), in the
 * order given. The passphrase is MQE2E_PASSPHRASE; the broker is 127.0.0.1.
 * `sub` prints "ready" once subscribed (retain as published), then per
 * message `msg TOPIC RETAINED PAYLOAD_HEX N ID:NAME_HEX:VALUE_HEX...` and per
 * drop `drop TOPIC CODE`; it exits 0 after COUNT messages, 4 when SECONDS
 * ran out. Exit 1: usage or a client call failed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mqe2e/MQTTClient.h"
#include "mqe2e/mqe2e.h"

static int got;

static void hex(const void *p, int len)
{
    const unsigned char *b = p;
    if (len == 0) putchar('-');
    for (int i = 0; i < len; i++)
        printf("%02x", b[i]);
}

static int on_message(void *ctx, char *topic, int topic_len, MQTTClient_message *m)
{
    (void)ctx;
    (void)topic_len;
    printf("msg %s %d ", topic, m->retained);
    hex(m->payload, m->payloadlen);
    printf(" %d", m->properties.count);
    for (int i = 0; i < m->properties.count; i++) {
        MQTTProperty *q = &m->properties.array[i];
        printf(" %d:", (int)q->identifier);
        if (q->identifier == MQTTPROPERTY_CODE_PAYLOAD_FORMAT_INDICATOR) {
            printf("-:%02x", (unsigned)q->value.byte);
            continue;
        }
        if (q->identifier == MQTTPROPERTY_CODE_USER_PROPERTY)
            hex(q->value.data.data, q->value.data.len);
        else
            putchar('-');
        putchar(':');
        if (q->identifier == MQTTPROPERTY_CODE_USER_PROPERTY)
            hex(q->value.value.data, q->value.value.len);
        else
            hex(q->value.data.data, q->value.data.len);
    }
    putchar('\n');
    fflush(stdout);
    got++;
    mqe2e_MQTTClient_freeMessage(&m);
    mqe2e_MQTTClient_free(topic);
    return 1;
}

static void on_dropped(void *ctx, const char *topic, int code)
{
    (void)ctx;
    printf("drop %s %d\n", topic, code);
    fflush(stdout);
}

static int add_prop(MQTTProperties *p, const char *spec)
{
    MQTTProperty q;
    memset(&q, 0, sizeof q);
    const char *v = strchr(spec, '=');
    if (v == NULL) return -1;
    v++;
    if (strncmp(spec, "pf=", 3) == 0) {
        q.identifier = MQTTPROPERTY_CODE_PAYLOAD_FORMAT_INDICATOR;
        q.value.byte = (unsigned char)atoi(v);
        return MQTTProperties_add(p, &q);
    }
    if (strncmp(spec, "u:", 2) == 0) {
        q.identifier = MQTTPROPERTY_CODE_USER_PROPERTY;
        q.value.data.data = (char *)(uintptr_t)(spec + 2);
        q.value.data.len = (int)(v - 1 - (spec + 2));
        q.value.value.data = (char *)(uintptr_t)v;
        q.value.value.len = (int)strlen(v);
        return MQTTProperties_add(p, &q);
    }
    if (strncmp(spec, "ct=", 3) == 0)
        q.identifier = MQTTPROPERTY_CODE_CONTENT_TYPE;
    else if (strncmp(spec, "rt=", 3) == 0)
        q.identifier = MQTTPROPERTY_CODE_RESPONSE_TOPIC;
    else if (strncmp(spec, "cd=", 3) == 0)
        q.identifier = MQTTPROPERTY_CODE_CORRELATION_DATA;
    else
        return -1;
    q.value.data.data = (char *)(uintptr_t)v;
    q.value.data.len = (int)strlen(v);
    return MQTTProperties_add(p, &q);
}

int main(int argc, char **argv)
{
    if (argc < 8 || (strcmp(argv[1], "pub") != 0 && strcmp(argv[1], "sub") != 0)) {
        fprintf(stderr, "usage: see the comment at the top of v5_peer.c\n");
        return 1;
    }
    const int pub = strcmp(argv[1], "pub") == 0;
    char uri[64];
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%s", argv[3]);
    mqe2e_policy *pol = NULL;
    if (mqe2e_init() != MQE2E_OK || mqe2e_policy_new(&pol) != MQE2E_OK ||
        mqe2e_policy_add_text(pol, argv[5]) != MQE2E_OK) {
        fprintf(stderr, "v5_peer: bad rule %s\n", argv[5]);
        return 1;
    }
    mqe2e_MQTTClient c = NULL;
    MQTTClient_createOptions cro = MQTTClient_createOptions_initializer;
    cro.MQTTVersion = MQTTVERSION_5;
    char id[64];
    snprintf(id, sizeof id, "v5peer-%s-%ld", argv[1], (long)time(NULL));
    if (mqe2e_MQTTClient_createWithOptions(&c, uri, id, MQTTCLIENT_PERSISTENCE_NONE, NULL, &cro) !=
        MQTTCLIENT_SUCCESS)
        return 1;
    mqe2e_MQTTClient_securityOptions so = mqe2e_MQTTClient_securityOptions_initializer;
    so.keystorePath = argv[2];
    so.passphraseEnv = "MQE2E_PASSPHRASE";
    so.policy = pol;
    so.onDropped = on_dropped;
    int rc = mqe2e_MQTTClient_setSecurity(c, &so);
    if (rc != MQTTCLIENT_SUCCESS) {
        fprintf(stderr, "v5_peer: setSecurity %d\n", rc);
        return 1;
    }
    if (!pub &&
        mqe2e_MQTTClient_setCallbacks(c, NULL, NULL, on_message, NULL) != MQTTCLIENT_SUCCESS)
        return 1;
    MQTTClient_connectOptions co = MQTTClient_connectOptions_initializer5;
    co.cleanstart = 1;
    MQTTResponse r = mqe2e_MQTTClient_connect5(c, &co, NULL, NULL);
    if (r.reasonCode != MQTTREASONCODE_SUCCESS) {
        fprintf(stderr, "v5_peer: connect %d\n", (int)r.reasonCode);
        return 1;
    }
    MQTTResponse_free(r);
    int status = 0;
    if (pub) {
        MQTTProperties props = MQTTProperties_initializer;
        for (int i = 8; i < argc; i++)
            if (add_prop(&props, argv[i]) != 0) {
                fprintf(stderr, "v5_peer: bad property %s\n", argv[i]);
                return 1;
            }
        MQTTClient_message m = MQTTClient_message_initializer;
        MQTTClient_deliveryToken dt = 0;
        m.payload = argv[6];
        m.payloadlen = (int)strlen(argv[6]);
        m.qos = 1;
        m.retained = atoi(argv[7]);
        m.properties = props;
        r = mqe2e_MQTTClient_publishMessage5(c, argv[4], &m, &dt);
        if ((int)r.reasonCode != 0 || mqe2e_MQTTClient_waitForCompletion(c, dt, 10000) != 0) {
            fprintf(stderr, "v5_peer: publish %d\n", (int)r.reasonCode);
            status = 1;
        }
        MQTTResponse_free(r);
        MQTTProperties_free(&props);
    } else {
        MQTTSubscribe_options sub = MQTTSubscribe_options_initializer;
        sub.retainAsPublished = 1;
        r = mqe2e_MQTTClient_subscribe5(c, argv[4], 1, &sub, NULL);
        if ((int)r.reasonCode != 1) {
            fprintf(stderr, "v5_peer: subscribe %d\n", (int)r.reasonCode);
            return 1;
        }
        MQTTResponse_free(r);
        printf("ready\n");
        fflush(stdout);
        const int count = atoi(argv[6]);
        const time_t end = time(NULL) + atoi(argv[7]);
        while (got < count && time(NULL) < end) {
            /* The messages arrive on the client's own thread: wait. */
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        status = got >= count ? 0 : 4;
    }
    mqe2e_MQTTClient_disconnect(c, 1000);
    mqe2e_MQTTClient_destroy(&c);
    mqe2e_policy_free(pol);
    return status;
}
