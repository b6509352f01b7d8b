#!/usr/bin/env bash
# apt-get install of the given Debian packages (after apt-get update when apt does not know them yet), waiting for a
# held apt/dpkg lock instead of failing. Unattended upgrades hold the lock on many fresh machines. Waits up to
# APT_LOCK_WAIT seconds in all (default 300), saying so once; any other apt error, or a lock still held by then,
# fails with apt's message.
set -uo pipefail
wait=${APT_LOCK_WAIT:-300}
deadline=$((SECONDS + wait))
said=""

apt_get() {
  local out
  while :; do
    out=$(DEBIAN_FRONTEND=noninteractive apt-get -qq "$@" 2>&1) && return 0
    if ! grep -q "Could not get lock" <<<"$out" || (( SECONDS >= deadline )); then
      echo "$out" >&2
      return 1
    fi
    if [ -z "$said" ]; then
      echo "apt-get $1: waiting up to ${wait} s for the package lock ($(grep -m1 -o 'held by process [0-9]* ([^)]*)' <<<"$out" || echo 'held by another process'))" >&2
      said=1
    fi
    sleep 2
  done
}

if ! apt-cache show "$@" >/dev/null 2>&1; then
  apt_get update || exit 1
fi
apt_get install -y "$@"
