#!/usr/bin/env bash
# One entry point for README's Quick start: installs what is missing (Debian 12
# packages), builds, then runs the encrypted demo or the whole test suite.
#
#   tools/quickstart.sh demo   # build + heart-rate demo on a local Mosquitto
#   tools/quickstart.sh test   # build + every test (ctest)
#
# Environment: MQE2E_BROKER_PORT (demo broker port, default 18830),
# MQE2E_BUILD_DIR (default ./build), CI=true turns warnings into errors.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${MQE2E_BUILD_DIR:-$here/build}"
mode="${1:-}"

packages=(build-essential cmake pkg-config libsodium-dev libprotobuf-c-dev
  protobuf-c-compiler libpaho-mqtt-dev mosquitto mosquitto-clients
  libcriterion-dev libcjson-dev libsqlite3-dev libpq-dev postgresql python3
  python3-cffi python3-paho-mqtt python3-pytest python3-setuptools python3-pip
  libssl-dev openssl bash-completion man-db docker-compose)

install_missing() {
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "quickstart: installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

build_all() {
  local werror=OFF
  [ "${CI:-}" = "true" ] && werror=ON
  cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMQE2E_WERROR="$werror" >/dev/null
  cmake --build "$build" -j"$(nproc)"
}

case "$mode" in
  demo)
    install_missing
    build_all
    exec bash "$here/examples/demo.sh" "$build"
    ;;
  test)
    install_missing
    build_all
    cd "$build"
    exec ctest -j2 --output-on-failure --timeout 900
    ;;
  *)
    echo "usage: $0 demo|test" >&2
    exit 1
    ;;
esac
