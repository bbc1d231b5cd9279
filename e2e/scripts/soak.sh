#!/usr/bin/env bash
# `make soak`: many randomized operation sequences against the release (e2e/tests/sequences.rs)
# on the local cluster and services, then a table: sequence seed, steps, invariant violations.
#
#   LC_SEQUENCES=N        sequences (default 10)
#   LC_SEQUENCE_STEPS=N   operations per sequence (default 12)
#   LC_SEQUENCE_SEED=S    replay one sequence
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$LC_REPO"

export LC_SEQUENCES="${LC_SEQUENCES:-10}" LC_SEQUENCE_STEPS="${LC_SEQUENCE_STEPS:-12}"
log "bringing up the real services and the local cluster"
bash e2e/scripts/services.sh up >/dev/null
bash e2e/scripts/cluster.sh up >/dev/null
log "$LC_SEQUENCES sequences of $LC_SEQUENCE_STEPS operations (the first failure stops the run and prints its seed)"
cargo test --locked -p e2e --test sequences -- --nocapture
