# bash completion for mqe2e (installed as share/bash-completion/completions/mqe2e)

_mqe2e_broker_opts="-h --host -p --port -u --username -P --pw --password-file --cafile --capath
 --cert --key --insecure --tls-version --tls-use-os-certs --ciphers -k --keepalive -d --debug --quiet"
_mqe2e_session_opts="-L --url -i --id -I --id-prefix -V --protocol-version -c
 --disable-clean-session -x --session-expiry-interval --will-topic --will-payload --will-qos
 --will-retain"
_mqe2e_key_opts="-K --keystore --passphrase-file --key-file --help"

_mqe2e()
{
    local cur prev cmd sub opts
    COMPREPLY=()
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev="${COMP_CWORD:+${COMP_WORDS[COMP_CWORD-1]}}"
    cmd="${COMP_WORDS[1]:-}"
    sub="${COMP_WORDS[2]:-}"

    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W "keygen group pub sub status enroll authority token revoke list --help --version" -- "$cur"))
        return 0
    fi
    case "$prev" in
        -K|--keystore|--passphrase-file|--key-file|--password-file|--cafile|--cert|--key|-f|--file|\
        --ticket-file|--db|--config|--out|--export-passphrase-file)
            COMPREPLY=($(compgen -f -- "$cur"))
            return 0 ;;
        --capath)
            COMPREPLY=($(compgen -d -- "$cur"))
            return 0 ;;
        --tls-version)
            COMPREPLY=($(compgen -W "tlsv1.3 tlsv1.2 tlsv1.1 tlsv1" -- "$cur"))
            return 0 ;;
        -V|--protocol-version)
            COMPREPLY=($(compgen -W "mqttv31 mqttv311 mqttv5" -- "$cur"))
            return 0 ;;
        -q|--qos|--will-qos)
            COMPREPLY=($(compgen -W "0 1 2" -- "$cur"))
            return 0 ;;
        --role)
            COMPREPLY=($(compgen -W "device service" -- "$cur"))
            return 0 ;;
    esac
    if [ "$COMP_CWORD" -eq 2 ]; then
        case "$cmd" in
            group) COMPREPLY=($(compgen -W "create rotate tree export import list grant ungrant signer-add signer-remove signer-list" -- "$cur")); return 0 ;;
            authority) COMPREPLY=($(compgen -W "init operator-add pin run" -- "$cur")); return 0 ;;
            token) COMPREPLY=($(compgen -W "create" -- "$cur")); return 0 ;;
            list) COMPREPLY=($(compgen -W "clients groups tokens" -- "$cur")); return 0 ;;
        esac
    fi
    local op="--authority -W --timeout --operator --json --remote"
    case "$cmd" in
        pub) opts="$_mqe2e_key_opts $_mqe2e_broker_opts $_mqe2e_session_opts -t --topic -m --message
              -f --file -l --stdin-line -s --stdin-file -n --null-message -r --retain -q --qos
              --repeat --repeat-delay --max-payload --policy" ;;
        sub) opts="$_mqe2e_key_opts $_mqe2e_broker_opts $_mqe2e_session_opts -t --topic -T --filter-out
              -U --unsubscribe -C --count -W --timeout -E -R --no-retained --retained-only
              --remove-retained -v --verbose -N -F --format -q --qos --max-payload --policy" ;;
        enroll) opts="$_mqe2e_key_opts $_mqe2e_broker_opts --ticket --ticket-file -W --timeout --kdf" ;;
        keygen) opts="$_mqe2e_key_opts --id --sender-id --kdf" ;;
        status) opts="$_mqe2e_key_opts --json $_mqe2e_broker_opts $op" ;;
        group) opts="$_mqe2e_key_opts --group --topic --out --signed --sender --client
              --export-passphrase-file --rotate-every --rotate-messages --id --tree --depth --history $_mqe2e_broker_opts $op" ;;
        authority) opts="$_mqe2e_key_opts $_mqe2e_broker_opts --db --id --prefix --name --sign-public
              --config --credential-ttl --grace -v --verbose --handshake-limits --tree-threshold" ;;
        token) opts="$_mqe2e_key_opts $_mqe2e_broker_opts $op --id --role --grant --group --ttl --count" ;;
        revoke) opts="$_mqe2e_key_opts $_mqe2e_broker_opts $op --id" ;;
        list) opts="$_mqe2e_key_opts $_mqe2e_broker_opts $op" ;;
        *) return 0 ;;
    esac
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    return 0
}
complete -F _mqe2e mqe2e
