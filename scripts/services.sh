#!/usr/bin/env bash
# Makes sure the local Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432) that
# genq runs on are up, starting them if installed and installing them (Debian) if
# not; and that ffmpeg/ffprobe (video jobs), Chromium and chromedriver (the admin
# page's browser test) and promtool (tests/deploy checks the Prometheus config and
# alerts with it) are installed.
set -euo pipefail

log() { printf '[services] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root for: $*"; return 1; fi
}

apt_install() {
  log "installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_redis() {
  if command -v redis-cli >/dev/null && redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
    return
  fi
  command -v redis-server >/dev/null || apt_install redis-server
  log "starting redis-server on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  for _ in $(seq 1 50); do
    redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG && return
    sleep 0.1
  done
  log "redis-server did not come up"; exit 1
}

ensure_postgres() {
  if command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; then
    return
  fi
  [ -d /etc/postgresql ] || apt_install postgresql
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n1)
  log "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null \
    || as_root pg_ctlcluster "$version" main start
  for _ in $(seq 1 100); do
    pg_isready -q -h 127.0.0.1 -p 5432 && return
    sleep 0.1
  done
  log "PostgreSQL did not come up"; exit 1
}

ensure_ffmpeg() {
  command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null && return
  apt_install ffmpeg
}

# Headless Chromium and its WebDriver for the admin page's browser test
# (crates/admin/tests/browser.rs).
ensure_chromium() {
  [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && return
  apt_install chromium chromium-driver
}

# libfaketime for the tests that run a worker whose clock is off
# (crates/runtime/tests/clock_skew.rs).
ensure_faketime() {
  [ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] && return
  apt_install faketime
}

# `ip` (iproute2) for the partition test, which runs a worker as a host of its own
# in a network namespace (bin/worker/tests/partition.rs; needs root).
ensure_iproute() {
  command -v ip >/dev/null && return
  apt_install iproute2
}

# promtool comes with Debian's `prometheus` package, whose install would start a
# Prometheus daemon on :9090 (the port the admin uses): policy-rc.d forbids starting
# services during the install, and a daemon started anyway is stopped.
ensure_promtool() {
  command -v promtool >/dev/null && return
  local policy=/usr/sbin/policy-rc.d own_policy="" rc=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod +x "$policy"
    own_policy=1
  fi
  apt_install --no-install-recommends prometheus || rc=$?
  if [ -n "$own_policy" ]; then as_root rm -f "$policy"; fi
  local pidfile=/run/prometheus/prometheus.pid
  if [ -f "$pidfile" ]; then
    log "stopping the prometheus daemon the package started"
    as_root kill "$(cat "$pidfile")" 2>/dev/null || true
    as_root rm -f "$pidfile"
  fi
  return "$rc"
}

ensure_redis
ensure_postgres
ensure_ffmpeg
# what only the tests need: `scripts/services.sh --test`
if [ "${1:-}" = "--test" ]; then
  ensure_chromium
  ensure_promtool
  ensure_faketime
  ensure_iproute
fi
