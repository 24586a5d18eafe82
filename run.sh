#!/usr/bin/env bash
# Runs the whole service in one process on local Redis/PostgreSQL, zero configuration.
# Extra arguments go to `genq run` (see `./run.sh --help`).
set -euo pipefail
cd "$(dirname "$0")"
scripts/services.sh
exec cargo run --release --bin genq -- run "$@"
