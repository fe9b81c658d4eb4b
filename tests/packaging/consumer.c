/* Smallest useful consumer: seal and open one message with the installed core,
 * and touch the Paho front so the plugin library is linked and loadable. */
#include <stdio.h>
#include <string.h>

#include "mqe2e/MQTTClient.h"
#include "mqe2e/mqe2e.h"

int main(void)
{
    if (mqe2e_init() != MQE2E_OK) return 1;
    uint8_t secret[MQE2E_GROUP_SECRET_BYTES] = {1, 2, 3};
    mqe2e_sender_key key;
    if (mqe2e_sender_key_derive(&key, secret, "g", 1, 7) != MQE2E_OK) return 1;
    const mqe2e_envelope_header h = {MQE2E_MODE_GROUP, 1, 7, 42, 0U};
    uint8_t env[128], pt[64];
    size_t env_len = 0, pt_len = 0;
    mqe2e_envelope_view view;
    if (mqe2e_envelope_seal(env, sizeof env, &env_len, &key, "t/1", "g", &h,
                            (const uint8_t *)"hello", 5) != MQE2E_OK ||
        mqe2e_envelope_parse(&view, env, env_len) != MQE2E_OK ||
        mqe2e_envelope_open(pt, sizeof pt, &pt_len, &key, "t/1", "g", &view) != MQE2E_OK ||
        pt_len != 5 || memcmp(pt, "hello", 5) != 0) {
        fprintf(stderr, "consumer: round trip failed\n");
        return 1;
    }
    mqe2e_sender_key_wipe(&key);
    printf("consumer ok: %s, %zu-byte envelope; plugin says \"%s\"\n", mqe2e_version(), env_len,
           mqe2e_MQTTClient_strerror(MQE2E_MQTTCLIENT_NO_POLICY));
    return 0;
}
