#!/usr/bin/env bash
# Builds listacompra-operator and listacompra-api as static (musl) release binaries and copies
# them to OUT_DIR, next to the few files a FROM-scratch image needs (OUT_DIR/etc: CA
# certificates for TLS to Prometheus and Perplexity, and passwd/group naming the non-root user
# 65532). The Dockerfile's build stage and the tests run exactly this script, so the image and
# CI ship the same build.
#
#   build-static.sh [OUT_DIR]       default OUT_DIR: $STATIC_TARGET_DIR/out
#
# Environment:
#   STATIC_TARGET_DIR  cargo target folder of this build (default: ${CARGO_TARGET_DIR:-target}/static);
#                      kept apart from the debug build so a running `cargo test` never waits on it.
#   RUST_TARGET        default x86_64-unknown-linux-musl.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$LC_REPO"

RUST_TARGET="${RUST_TARGET:-x86_64-unknown-linux-musl}"
STATIC_TARGET_DIR="${STATIC_TARGET_DIR:-${CARGO_TARGET_DIR:-$LC_REPO/target}/static}"
OUT_DIR="${1:-$STATIC_TARGET_DIR/out}"
BINARIES=(listacompra-operator listacompra-api)

need_cmd cargo "install Rust with rustup (https://rustup.rs), then open a new shell."
# One build into this folder at a time, install step included (make test starts one in the
# background and the static_image tests run this script too): the second waits, then finds
# everything built.
mkdir -p "$STATIC_TARGET_DIR"
exec 7>"$STATIC_TARGET_DIR/.build-static.lock"
flock -w 7200 7 || die "timed out waiting for another static build ($STATIC_TARGET_DIR/.build-static.lock)."
# musl-gcc compiles the C parts (aws-lc-sys) for the musl target; file checks the result.
apt_install musl-tools file ca-certificates
if command -v rustup >/dev/null 2>&1; then
  rustup target list --installed | grep -qx "$RUST_TARGET" \
    || rustup target add "$RUST_TARGET" \
    || die "rustup target add $RUST_TARGET failed. Fix: make static.rust-lang.org reachable, or install the target by hand."
fi

log "building ${BINARIES[*]} for $RUST_TARGET (release, static)"
target_env=$(printf '%s' "$RUST_TARGET" | tr 'a-z-' 'A-Z_')
export "CC_${RUST_TARGET//-/_}=musl-gcc"
export "CARGO_TARGET_${target_env}_RUSTFLAGS=-C target-feature=+crt-static"
CARGO_TARGET_DIR="$STATIC_TARGET_DIR" cargo build --release --locked --target "$RUST_TARGET" \
  -p listacompra-operator -p listacompra-api

mkdir -p "$OUT_DIR"
for bin in "${BINARIES[@]}"; do
  src="$STATIC_TARGET_DIR/$RUST_TARGET/release/$bin"
  [ -x "$src" ] || die "cargo did not produce $src. Fix: check the build output above."
  # Refuse anything with an interpreter or shared libraries: the image has neither.
  desc=$(file -b "$src")
  case "$desc" in
    *"statically linked"*|*"static-pie linked"*) ;;
    *) die "$src is not static ($desc). Fix: build for a musl target with crt-static." ;;
  esac
  # Written aside and renamed into place: a reader never sees half a file.
  install -m 0755 "$src" "$OUT_DIR/.$bin.tmp"
  mv -f "$OUT_DIR/.$bin.tmp" "$OUT_DIR/$bin"
done
# The image's /etc: CA bundle, and a passwd/group entry for the non-root user.
mkdir -p "$OUT_DIR/etc/ssl/certs"
install -m 0644 /etc/ssl/certs/ca-certificates.crt "$OUT_DIR/etc/ssl/certs/.ca.tmp"
mv -f "$OUT_DIR/etc/ssl/certs/.ca.tmp" "$OUT_DIR/etc/ssl/certs/ca-certificates.crt"
printf 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' > "$OUT_DIR/etc/.passwd.tmp"
mv -f "$OUT_DIR/etc/.passwd.tmp" "$OUT_DIR/etc/passwd"
printf 'nonroot:x:65532:\n' > "$OUT_DIR/etc/.group.tmp"
mv -f "$OUT_DIR/etc/.group.tmp" "$OUT_DIR/etc/group"
log "static binaries in $OUT_DIR"
printf '%s\n' "$OUT_DIR"
