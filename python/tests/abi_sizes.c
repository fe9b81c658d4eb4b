/* Prints sizeof and field offsets of the structs the Python binding declares
 * (python/mqe2e/_cdef.py), as JSON; python/tests/test_abi.py compares them
 * with cffi's view, so a header change cannot silently shift a field. */
#include <stddef.h>
#include <stdio.h>

#include "mqe2e/control.h"
#include "mqe2e/credential.h"
#include "mqe2e/envelope.h"
#include "mqe2e/keystore.h"
#include "mqe2e/protect.h"
#include "mqe2e/session.h"
#include "mqe2e/storage.h"

static int first;
#define S(T)                                                                                       \
    printf("%s\n \"%s\": {\"size\": %zu, \"fields\": {", first ? "" : ",", #T, sizeof(T));         \
    first = 0;                                                                                     \
    {                                                                                              \
        int f_ = 1;                                                                                \
        typedef T cur_;
#define F(m)                                                                                       \
    printf("%s\"%s\": %zu", f_ ? "" : ", ", #m, offsetof(cur_, m));                                \
    f_ = 0;
#define E                                                                                          \
    (void)f_;                                                                                      \
    printf("}}");                                                                                  \
    }

// clang-format off
int main(void)
{
    first = 1;
    printf("{");
    S(mqe2e_sender_key) F(key) F(iv) E
    S(mqe2e_envelope_header) F(mode) F(epoch) F(sender_id) F(seq) F(instance) E
    S(mqe2e_envelope_view) F(header) F(ciphertext) F(ciphertext_len) F(signature) F(signature_len) E
    S(mqe2e_storage) F(load) F(store) F(destroy) F(ctx) E
    S(mqe2e_signer) F(sender_id) F(sign_public) F(client_id) E
    S(mqe2e_authority_pin) F(authority_id) F(control_prefix) F(sign_public) F(dh_public) E
    S(mqe2e_ticket) F(authority_sign_public) F(authority_dh_public) F(authority_id)
        F(control_prefix) F(token_id) F(token) F(client_id) F(expires_at) E
    S(mqe2e_control_frame) F(kind) F(from) F(session) F(step) F(noise) F(noise_len) E
    S(mqe2e_key_bundle) F(group) F(topic_filter) F(epoch) F(secret) F(created_at) F(sender_id)
        F(retired_at) F(grace_seconds) F(tree_leaf_key) F(tree_path_len) F(tree_path) F(tree_grace_seconds) E
    S(mqe2e_signer_grants) F(pub_filters) F(n_pub_filters) E
    S(mqe2e_group_directory) F(group) F(signers) F(n_signers) F(grants) F(has_grants) E
    S(mqe2e_group_name) F(name) E
    S(mqe2e_control_update) F(status) F(push_seq) F(credential) F(credential_len) F(bundles)
        F(n_bundles) F(revocation_list) F(revocation_list_len) F(removed_groups)
        F(n_removed_groups) F(directories) F(n_directories) E
    S(mqe2e_enroll_request) F(token_id) F(client_id) F(dh_public) F(sign_public) F(session) E
    S(mqe2e_hello_request) F(client_id) F(credential_serial) F(dh_public) F(session) E
    S(mqe2e_protector_options) F(struct_version) F(replay_width) F(epoch_grace_seconds)
        F(max_payload) F(checkpoint_every) F(checkpoint_seconds) E
    S(mqe2e_counters) F(sealed) F(opened) F(plaintext_out) F(plaintext_in) F(dropped) E
    S(mqe2e_receipt) F(active) F(epoch) F(sender_id) F(seq) F(group_id) E
    S(mqe2e_session_time) F(wall_s) F(mono_ms) E
    S(mqe2e_session_options) F(struct_version) F(hold_count) F(hold_bytes) F(hold_seconds)
        F(fresh_max_seconds) F(protector) F(log) F(log_ctx) F(log_level) F(spool) E
    S(mqe2e_msg_property) F(id) F(name) F(name_len) F(value) F(value_len) E
    S(mqe2e_session_action) F(kind) F(topic) F(data) F(len) F(qos) F(retained) F(dup) F(current)
        F(code) F(receipt) F(props) F(nprops) E
    S(mqe2e_session_rx) F(now) F(commit) F(commit_rc) F(accepted) F(out) E
    S(mqe2e_session_counters) F(handshakes_ok) F(handshakes_failed) F(hellos_sent)
        F(pushes_applied) F(pushes_refused) F(held) F(released) F(hold_dropped)
        F(revoked_refused) F(channel_sent) F(channel_opened) F(control_ignored)
        F(channel_rate_limited) F(stale_refused) F(spooled) F(tree_applied) F(tree_refused)
        F(tree_replayed) F(tree_gaps) F(tree_revoked) E
    printf("\n}\n");
    return 0;
}
// clang-format on
