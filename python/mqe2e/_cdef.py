"""C declarations of libmqe2e used by the binding (cffi ABI mode).

Copied from lib/include/mqe2e/*.h with the array sizes written out. The
layouts are checked against the C compiler's by tests/test_abi.py (it runs
build/tests/mqe2e_abi_sizes), so a header change that moves a field fails a
test instead of corrupting memory.
"""

CDEF = r"""
/* error.h */
const char *mqe2e_strerror(int code);
const char *mqe2e_error_name(int code);
int mqe2e_init(void);
const char *mqe2e_version(void);

/* hkdf.h */
int mqe2e_hkdf_extract(uint8_t prk[32], const uint8_t *salt, size_t salt_len,
                       const uint8_t *ikm, size_t ikm_len);
int mqe2e_hkdf_expand(uint8_t *out, size_t out_len, const uint8_t prk[32],
                      const uint8_t *info, size_t info_len);

/* envelope.h */
typedef struct mqe2e_sender_key {
    uint8_t key[32];
    uint8_t iv[12];
} mqe2e_sender_key;
typedef struct mqe2e_envelope_header {
    int mode;
    uint32_t epoch;
    uint32_t sender_id;
    uint64_t seq;
    uint64_t instance;
} mqe2e_envelope_header;
typedef struct mqe2e_envelope_view {
    mqe2e_envelope_header header;
    const uint8_t *ciphertext;
    size_t ciphertext_len;
    const uint8_t *signature;
    size_t signature_len;
} mqe2e_envelope_view;
int mqe2e_sender_key_derive(mqe2e_sender_key *out, const uint8_t secret[32],
                            const char *group_id, uint32_t epoch, uint32_t sender_id);
void mqe2e_sender_key_wipe(mqe2e_sender_key *key);
size_t mqe2e_envelope_sealed_bound(size_t pt_len);
int mqe2e_envelope_seal(uint8_t *out, size_t out_cap, size_t *out_len,
                        const mqe2e_sender_key *key, const char *topic,
                        const char *group_id, const mqe2e_envelope_header *header,
                        const uint8_t *pt, size_t pt_len);
int mqe2e_envelope_parse(mqe2e_envelope_view *view, const uint8_t *in, size_t in_len);
int mqe2e_envelope_open(uint8_t *pt, size_t pt_cap, size_t *pt_len,
                        const mqe2e_sender_key *key, const char *topic,
                        const char *group_id, const mqe2e_envelope_view *view);
int mqe2e_envelope_open_signed(uint8_t *pt, size_t pt_cap, size_t *pt_len,
                               const mqe2e_sender_key *key, const uint8_t signer_pk[32],
                               const char *topic, const char *group_id,
                               const mqe2e_envelope_view *view);

/* noise.h */
typedef struct mqe2e_noise_handshake mqe2e_noise_handshake;
int mqe2e_noise_handshake_new(mqe2e_noise_handshake **hs, const char *protocol_name,
                              int role, const uint8_t *prologue, size_t prologue_len);
void mqe2e_noise_handshake_free(mqe2e_noise_handshake *hs);
int mqe2e_noise_handshake_set_local_static(mqe2e_noise_handshake *hs, const uint8_t sk[32]);
int mqe2e_noise_handshake_set_remote_static(mqe2e_noise_handshake *hs, const uint8_t pk[32]);
int mqe2e_noise_handshake_set_psk(mqe2e_noise_handshake *hs, const uint8_t psk[32]);
int mqe2e_noise_handshake_set_ephemeral(mqe2e_noise_handshake *hs, const uint8_t sk[32]);
int mqe2e_noise_write_message(mqe2e_noise_handshake *hs, uint8_t *out, size_t out_cap,
                              size_t *out_len, const uint8_t *payload, size_t payload_len);
int mqe2e_noise_read_message(mqe2e_noise_handshake *hs, uint8_t *payload_out,
                             size_t payload_cap, size_t *payload_len,
                             const uint8_t *msg, size_t msg_len);
typedef struct mqe2e_noise_cipher mqe2e_noise_cipher;
int mqe2e_noise_cipher_new(mqe2e_noise_cipher **cs, const uint8_t key[32]);
void mqe2e_noise_cipher_free(mqe2e_noise_cipher *cs);
int mqe2e_noise_cipher_export_key(const mqe2e_noise_cipher *cs, uint8_t out[32]);
int mqe2e_noise_cipher_rekey(mqe2e_noise_cipher *cs);
int mqe2e_noise_cipher_decrypt_n(const mqe2e_noise_cipher *cs, uint64_t n, uint8_t *out,
                                 size_t out_cap, size_t *out_len, const uint8_t *ad,
                                 size_t ad_len, const uint8_t *ciphertext,
                                 size_t ciphertext_len);

/* storage.h */
typedef struct mqe2e_storage {
    int (*load)(void *ctx, uint8_t **data, size_t *len);
    int (*store)(void *ctx, const uint8_t *data, size_t len);
    void (*destroy)(void *ctx);
    void *ctx;
} mqe2e_storage;
int mqe2e_storage_file_passphrase(mqe2e_storage *out, const char *path,
                                  const char *passphrase, size_t passphrase_len);
int mqe2e_storage_file_key(mqe2e_storage *out, const char *path, const uint8_t key[32]);
int mqe2e_storage_read_key_file(uint8_t key[32], const char *path);
int mqe2e_storage_memory(mqe2e_storage *out);

/* keystore.h */
typedef struct mqe2e_keystore mqe2e_keystore;
typedef struct mqe2e_signer {
    uint32_t sender_id;
    uint8_t sign_public[32];
    char client_id[256];
} mqe2e_signer;
typedef struct mqe2e_authority_pin {
    char authority_id[256];
    char control_prefix[256];
    uint8_t sign_public[32];
    uint8_t dh_public[32];
} mqe2e_authority_pin;
int mqe2e_keystore_create(mqe2e_keystore **out, mqe2e_storage storage,
                          const char *client_id, uint32_t sender_id);
int mqe2e_keystore_open(mqe2e_keystore **out, mqe2e_storage storage);
void mqe2e_keystore_close(mqe2e_keystore *ks);
int mqe2e_keystore_flush(mqe2e_keystore *ks);
const char *mqe2e_keystore_client_id(const mqe2e_keystore *ks);
uint32_t mqe2e_keystore_sender_id(const mqe2e_keystore *ks);
int mqe2e_keystore_identity_public(const mqe2e_keystore *ks, uint8_t sign_pk[32],
                                   uint8_t dh_pk[32]);
int mqe2e_keystore_group_add_epoch(mqe2e_keystore *ks, const char *group_id,
                                   const char *topic_filter, uint32_t epoch,
                                   const uint8_t secret[32], uint64_t now);
size_t mqe2e_keystore_group_count(const mqe2e_keystore *ks);
const char *mqe2e_keystore_group_name(const mqe2e_keystore *ks, size_t index);
const char *mqe2e_keystore_group_filter(const mqe2e_keystore *ks, const char *group_id);
int mqe2e_keystore_group_current_epoch(const mqe2e_keystore *ks, const char *group_id,
                                       uint32_t *epoch);
int mqe2e_keystore_group_is_signed(const mqe2e_keystore *ks, const char *group_id);
int mqe2e_keystore_group_import(mqe2e_keystore *ks, const uint8_t *sealed, size_t sealed_len,
                                const char *passphrase, size_t passphrase_len, uint64_t now,
                                char *group_id_out, size_t group_id_cap);
int mqe2e_keystore_dh_secret(const mqe2e_keystore *ks, uint8_t dh_sk[32]);
int mqe2e_keystore_set_authority(mqe2e_keystore *ks, const mqe2e_authority_pin *pin);
int mqe2e_keystore_authority(const mqe2e_keystore *ks, mqe2e_authority_pin *pin);
int mqe2e_keystore_set_credential(mqe2e_keystore *ks, const uint8_t *credential, size_t len);
int mqe2e_keystore_credential(const mqe2e_keystore *ks, const uint8_t **credential,
                              size_t *len);
int mqe2e_keystore_set_revocation_list(mqe2e_keystore *ks, const uint8_t *list, size_t len,
                                       uint64_t version);
int mqe2e_keystore_group_apply(mqe2e_keystore *ks, const char *group_id,
                               const char *topic_filter, uint32_t epoch,
                               const uint8_t secret[32], uint32_t sender_id,
                               uint64_t retired_at, uint64_t now);

/* credential.h */
typedef struct mqe2e_credential mqe2e_credential;
typedef struct mqe2e_revocation_list mqe2e_revocation_list;
typedef struct mqe2e_ticket {
    uint8_t authority_sign_public[32];
    uint8_t authority_dh_public[32];
    char authority_id[256];
    char control_prefix[256];
    uint8_t token_id[16];
    uint8_t token[32];
    char client_id[256];
    uint64_t expires_at;
} mqe2e_ticket;
int mqe2e_ticket_decode(mqe2e_ticket *out, const char *text);
void mqe2e_ticket_wipe(mqe2e_ticket *t);
int mqe2e_credential_verify(mqe2e_credential **out, const uint8_t *in, size_t len,
                            const uint8_t authority_pk[32], uint64_t now);
void mqe2e_credential_free(mqe2e_credential *c);
const char *mqe2e_credential_client_id(const mqe2e_credential *c);
uint64_t mqe2e_credential_serial(const mqe2e_credential *c);
uint64_t mqe2e_credential_expires_at(const mqe2e_credential *c);
int mqe2e_revocation_list_verify(mqe2e_revocation_list **out, const uint8_t *in, size_t len,
                                 const uint8_t authority_pk[32]);
uint64_t mqe2e_revocation_list_version(const mqe2e_revocation_list *l);
void mqe2e_revocation_list_free(mqe2e_revocation_list *l);

/* control.h */
typedef struct mqe2e_control_frame {
    uint32_t kind;
    char from[256];
    uint8_t session[16];
    uint32_t step;
    const uint8_t *noise;
    size_t noise_len;
} mqe2e_control_frame;
typedef struct mqe2e_key_bundle {
    char group[256];
    char topic_filter[1024];
    uint32_t epoch;
    uint8_t secret[32];
    uint64_t created_at;
    uint32_t sender_id;
    uint64_t retired_at;
    uint32_t grace_seconds;
    uint8_t tree_leaf_key[32];
    uint32_t tree_path_len;
    uint8_t tree_path[707];
    uint32_t tree_grace_seconds;
} mqe2e_key_bundle;
typedef struct mqe2e_signer_grants {
    char **pub_filters;
    size_t n_pub_filters;
} mqe2e_signer_grants;
typedef struct mqe2e_group_directory {
    char group[256];
    mqe2e_signer *signers;
    size_t n_signers;
    mqe2e_signer_grants *grants;
    int has_grants;
} mqe2e_group_directory;
typedef struct mqe2e_group_name {
    char name[256];
} mqe2e_group_name;
typedef struct mqe2e_control_update {
    int32_t status;
    uint64_t push_seq;
    uint8_t *credential;
    size_t credential_len;
    mqe2e_key_bundle *bundles;
    size_t n_bundles;
    uint8_t *revocation_list;
    size_t revocation_list_len;
    mqe2e_group_name *removed_groups;
    size_t n_removed_groups;
    mqe2e_group_directory *directories;
    size_t n_directories;
} mqe2e_control_update;
typedef struct mqe2e_enroll_request {
    uint8_t token_id[16];
    char client_id[256];
    uint8_t dh_public[32];
    uint8_t sign_public[32];
    uint8_t session[16];
} mqe2e_enroll_request;
typedef struct mqe2e_hello_request {
    char client_id[256];
    uint64_t credential_serial;
    uint8_t dh_public[32];
    uint8_t session[16];
} mqe2e_hello_request;
typedef struct mqe2e_enroll_device mqe2e_enroll_device;
typedef struct mqe2e_enroll_authority mqe2e_enroll_authority;
typedef struct mqe2e_hello_authority mqe2e_hello_authority;
int mqe2e_control_frame_decode(mqe2e_control_frame *f, const uint8_t *in, size_t len);
void mqe2e_control_update_wipe(mqe2e_control_update *u);
int mqe2e_control_update_apply_directories(mqe2e_keystore *ks, const mqe2e_control_update *u);
typedef struct mqe2e_update_event mqe2e_update_event;
typedef void (*mqe2e_update_observer)(void *ctx, const mqe2e_update_event *ev);
int mqe2e_control_update_apply(mqe2e_keystore *ks, const mqe2e_control_update *u,
                               const uint8_t authority_sign_public[32], uint64_t now,
                               unsigned flags, mqe2e_update_observer obs, void *ctx);
int mqe2e_enroll_begin(mqe2e_enroll_device **st, uint8_t *out, size_t out_cap,
                       size_t *out_len, const mqe2e_ticket *ticket,
                       const uint8_t dh_secret[32], const uint8_t sign_public[32],
                       uint64_t now);
int mqe2e_enroll_finish(mqe2e_enroll_device *st, mqe2e_control_update *reply,
                        mqe2e_credential **verified, const uint8_t *frame, size_t len,
                        uint64_t now);
void mqe2e_enroll_device_free(mqe2e_enroll_device *st);
int mqe2e_enroll_accept_read(mqe2e_enroll_authority **st, mqe2e_enroll_request *req,
                             const uint8_t authority_dh_secret[32], const char *prefix,
                             const uint8_t *frame, size_t len);
int mqe2e_enroll_accept_verify_mac(mqe2e_enroll_authority *st, const uint8_t token[32]);
void mqe2e_enroll_authority_free(mqe2e_enroll_authority *st);
int mqe2e_hello_accept_read(mqe2e_hello_authority **st, mqe2e_hello_request *req,
                            const uint8_t authority_dh_secret[32], const char *prefix,
                            const uint8_t *frame, size_t len);
int mqe2e_hello_accept_check_static(mqe2e_hello_authority *st,
                                    const uint8_t enrolled_dh_public[32]);
void mqe2e_hello_authority_free(mqe2e_hello_authority *st);
int mqe2e_push_open(mqe2e_control_update *push, const uint8_t client_dh_secret[32],
                    const uint8_t authority_dh_public[32], const char *prefix,
                    const char *authority_id, const uint8_t *frame, size_t len,
                    uint64_t last_push_seq);

/* policy.h */
typedef struct mqe2e_policy mqe2e_policy;
int mqe2e_policy_new(mqe2e_policy **out);
void mqe2e_policy_free(mqe2e_policy *p);
int mqe2e_policy_add_text(mqe2e_policy *p, const char *rule);

/* protect.h */
typedef struct mqe2e_protector mqe2e_protector;
typedef struct mqe2e_protector_options {
    uint32_t struct_version;
    uint32_t replay_width;
    uint64_t epoch_grace_seconds;
    size_t max_payload;
    uint32_t checkpoint_every;
    uint32_t checkpoint_seconds;
} mqe2e_protector_options;
typedef struct mqe2e_counters {
    uint64_t sealed;
    uint64_t opened;
    uint64_t plaintext_out;
    uint64_t plaintext_in;
    uint64_t dropped[13];
} mqe2e_counters;
typedef struct mqe2e_receipt {
    uint32_t active;
    uint32_t epoch;
    uint32_t sender_id;
    uint64_t seq;
    char group_id[256];
} mqe2e_receipt;
const char *mqe2e_drop_reason_name(int r);
int mqe2e_drop_reason_of(int code);
void mqe2e_protector_counters(const mqe2e_protector *p, mqe2e_counters *out);
int mqe2e_policy_add_keystore_groups(mqe2e_policy *p, const mqe2e_keystore *ks);

/* msgmeta.h */
typedef struct mqe2e_msg_property {
    uint8_t id;
    const uint8_t *name;
    size_t name_len;
    const uint8_t *value;
    size_t value_len;
} mqe2e_msg_property;

/* session.h */
typedef struct mqe2e_session mqe2e_session;
typedef struct mqe2e_session_time {
    uint64_t wall_s;
    uint64_t mono_ms;
} mqe2e_session_time;
typedef void mqe2e_session_log_fn(void *ctx, int level, const char *message);
typedef struct mqe2e_session_options {
    uint32_t struct_version;
    size_t hold_count;
    size_t hold_bytes;
    uint64_t hold_seconds;
    uint64_t fresh_max_seconds;
    const mqe2e_protector_options *protector;
    mqe2e_session_log_fn *log;
    void *log_ctx;
    int log_level;
    void *spool;
} mqe2e_session_options;
typedef struct mqe2e_session_action {
    int kind;
    const char *topic;
    const char *data; /* uint8_t * in session.h (same layout): char so that
                         ffi.unpack() copies it into bytes in one call */
    size_t len;
    int qos;
    int retained;
    int dup;
    int current;
    int code;
    mqe2e_receipt receipt;
    const mqe2e_msg_property *props;
    size_t nprops;
} mqe2e_session_action;
typedef struct mqe2e_session_rx {
    mqe2e_session_time now;
    int commit;
    int commit_rc;
    mqe2e_receipt accepted;
    mqe2e_session_action out;
} mqe2e_session_rx;
typedef struct mqe2e_session_counters {
    uint64_t handshakes_ok;
    uint64_t handshakes_failed;
    uint64_t hellos_sent;
    uint64_t pushes_applied;
    uint64_t pushes_refused;
    uint64_t held;
    uint64_t released;
    uint64_t hold_dropped;
    uint64_t revoked_refused;
    uint64_t channel_sent;
    uint64_t channel_opened;
    uint64_t control_ignored;
    uint64_t channel_rate_limited;
    uint64_t stale_refused;
    uint64_t spooled;
    uint64_t tree_applied;
    uint64_t tree_refused;
    uint64_t tree_replayed;
    uint64_t tree_gaps;
    uint64_t tree_revoked;
} mqe2e_session_counters;
int mqe2e_session_new(mqe2e_session **out, mqe2e_keystore *ks, const mqe2e_policy *policy,
                      const mqe2e_session_options *opts);
void mqe2e_session_free(mqe2e_session *s);
int mqe2e_session_has_control(const mqe2e_session *s);
int mqe2e_session_connected(mqe2e_session *s, mqe2e_session_time now);
void mqe2e_session_disconnected(mqe2e_session *s);
int mqe2e_session_message_received(mqe2e_session *s, const char *topic, size_t topic_len,
                                   const uint8_t *payload, size_t len, int qos, int retained,
                                   int dup, unsigned flags, mqe2e_session_time now);
int mqe2e_session_message_received_props(mqe2e_session *s, const char *topic,
                                         size_t topic_len, const uint8_t *payload, size_t len,
                                         int qos, int retained, int dup, unsigned flags,
                                         const mqe2e_msg_property *props, size_t nprops,
                                         mqe2e_session_time now);
int mqe2e_session_commit(mqe2e_session *s, const mqe2e_receipt *receipt);
size_t mqe2e_session_publish_bound(size_t pt_len);
int mqe2e_session_publish(mqe2e_session *s, const char *topic, const uint8_t *pt,
                          size_t pt_len, int qos, int retained, mqe2e_session_time now,
                          uint8_t *out, size_t out_cap, size_t *out_len);
int mqe2e_session_publish_props(mqe2e_session *s, const char *topic, const uint8_t *pt,
                                size_t pt_len, int qos, int retained,
                                const mqe2e_msg_property *props, size_t nprops,
                                mqe2e_session_time now, uint8_t *out, size_t out_cap,
                                size_t *out_len);
int mqe2e_session_tick(mqe2e_session *s, int connected, mqe2e_session_time now);
uint64_t mqe2e_session_next_timer(const mqe2e_session *s, mqe2e_session_time now);
int mqe2e_session_next(mqe2e_session *s, mqe2e_session_action *out);
size_t mqe2e_session_pending(const mqe2e_session *s);
int mqe2e_session_receive_one(mqe2e_session *s, const char *topic, size_t topic_len,
                              const uint8_t *payload, size_t len, int qos, int retained,
                              int dup, unsigned flags, mqe2e_session_time now,
                              mqe2e_session_action *out);
int mqe2e_session_receive_rx(mqe2e_session *s, mqe2e_session_rx *rx, const char *topic,
                             size_t topic_len, const uint8_t *payload, size_t len,
                             unsigned meta);
int mqe2e_session_commit_receive_one(mqe2e_session *s, mqe2e_receipt *accepted, int *commit_rc,
                                     const char *topic, size_t topic_len,
                                     const uint8_t *payload, size_t len, int qos, int retained,
                                     int dup, unsigned flags, mqe2e_session_time now,
                                     mqe2e_session_action *out);
int mqe2e_session_fresh(const mqe2e_session *s, mqe2e_session_time now);
void mqe2e_session_get_counters(const mqe2e_session *s, mqe2e_session_counters *out);
mqe2e_protector *mqe2e_session_protector(mqe2e_session *s);

/* libc, for wiping Python-owned buffers */
void sodium_memzero(void *pnt, size_t len);
"""

# Structs whose layout tests/test_abi.py compares with the compiler's.
CHECKED_STRUCTS = (
    "mqe2e_sender_key", "mqe2e_envelope_header", "mqe2e_envelope_view", "mqe2e_storage",
    "mqe2e_signer", "mqe2e_authority_pin", "mqe2e_ticket", "mqe2e_control_frame",
    "mqe2e_key_bundle", "mqe2e_signer_grants", "mqe2e_group_directory", "mqe2e_group_name",
    "mqe2e_control_update", "mqe2e_enroll_request", "mqe2e_hello_request",
    "mqe2e_protector_options", "mqe2e_counters", "mqe2e_receipt", "mqe2e_session_time",
    "mqe2e_session_options", "mqe2e_session_action", "mqe2e_session_rx",
    "mqe2e_session_counters",
    "mqe2e_msg_property",
)
