#!/usr/bin/env bash
# The test command: starts what the tests need, then format, lint and test.
set -euo pipefail
cd "$(dirname "$0")"
scripts/services.sh --test
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
