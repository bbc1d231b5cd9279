#!/usr/bin/env bash
# Installs s3s-fs (an S3-protocol server over a folder, from crates.io, pinned by
# S3S_FS_VERSION in lib.sh, built with its published Cargo.lock) into a cache folder keyed by
# that version, for attachments in the local environment (services.sh up s3). Skips the build
# when the binary is there. Prints the binary's path on stdout, and only that.
# A cold build took 2.5 minutes on an idle 2-core machine (about 20 when it shared the cores
# with other builds at nice 10).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

bin="$LC_S3S_ROOT/bin/s3s-fs"
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
need_cmd cargo "install Rust with rustup (https://rustup.rs)."
mkdir -p "$LC_CACHE"
# Several processes may ask at once: one builds, the others wait.
exec 8>"$LC_CACHE/.s3s-fs-build.lock"
flock -w 1800 8 || die "timed out waiting for another build of s3s-fs ($LC_CACHE/.s3s-fs-build.lock)."
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
log "building s3s-fs $S3S_FS_VERSION from crates.io (a cold build takes 2-3 minutes on an idle 2-core machine)"
start=$SECONDS
# Its own target folder (not the workspace's), removed afterwards: only the binary is kept.
tmp=$(mktemp -d "$LC_CACHE/s3s-fs-build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
CARGO_TARGET_DIR="$tmp" cargo install s3s-fs --version "$S3S_FS_VERSION" --features binary \
    --locked --root "$LC_S3S_ROOT" >&2 \
  || die "cargo install s3s-fs $S3S_FS_VERSION failed (see output above). Fix: make crates.io reachable (cargo's registry), free disk space, then re-run."
log "built s3s-fs in $((SECONDS - start))s"
echo "$bin"
