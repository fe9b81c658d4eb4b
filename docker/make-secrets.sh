#!/usr/bin/env bash
# Creates the secret files docker-compose.yml mounts (docker/secrets/, one
# random value per role and credential, mode 0600). Existing files are kept,
# so keystores made with them stay readable. The folder is in .gitignore and
# .dockerignore: secrets never enter the repository or the image.
set -euo pipefail
dir="$(cd "$(dirname "$0")" && pwd)/secrets"
umask 077
mkdir -p "$dir"
for name in authority_passphrase operator_passphrase device_passphrase backend_passphrase \
            authority_broker_password operator_broker_password device_broker_password \
            backend_broker_password; do
  if [ ! -s "$dir/$name" ]; then
    od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$dir/$name"
    printf '\n' >>"$dir/$name"
    echo "created $dir/$name"
  fi
done
