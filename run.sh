#!/usr/bin/env bash
# Runs the whole service in one process on local Redis/PostgreSQL, zero configuration.
# Without GENQ_CONFIG, the fake provider (no keys needed) serves every job type on
# 127.0.0.1:8099 and config/genq.example.toml points at it.
# Extra arguments go to `genq run` (see `./run.sh --help`).
set -euo pipefail
cd "$(dirname "$0")"
scripts/services.sh
cargo build --release --bin genq --bin fake-provider
if [ -z "${GENQ_CONFIG:-}" ]; then
  export GENQ_CONFIG=config/genq.example.toml
  target/release/fake-provider --addr 127.0.0.1:8099 &
  fake=$!
  trap 'kill "$fake" 2>/dev/null || true' EXIT
fi
target/release/genq run "$@"
