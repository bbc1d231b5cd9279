#!/usr/bin/env bash
# Packs a built kubectl-listacompra for krew and writes its plugin manifest:
#   e2e/scripts/krew-manifest.sh VERSION BASE_URL BINARY OUT_DIR [OS ARCH]
# makes OUT_DIR/kubectl-listacompra_<VERSION>_<OS>_<ARCH>.tar.gz (the binary and LICENSE) and
# OUT_DIR/listacompra.yaml, whose archive URI is BASE_URL/<archive> and whose sha256 is the
# archive's. Run it for the release's binaries (a static musl build for linux/amd64:
# cargo build --release --locked --target x86_64-unknown-linux-musl -p kubectl-listacompra),
# upload the archive to BASE_URL, and submit listacompra.yaml to a krew index.
# e2e/ci-lint validates the result with krew's own validate-krew-manifest, which installs it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

[ $# -ge 4 ] || die "usage: $0 VERSION BASE_URL BINARY OUT_DIR [OS ARCH]"
version=$1 base_url=${2%/} binary=$3 out=$4 os=${5:-linux} arch=${6:-amd64}
[[ "$version" =~ ^v[0-9]+\.[0-9]+\.[0-9]+ ]] || die "VERSION must look like v1.2.3 (krew wants a v), not '$version'."
[ -x "$binary" ] || die "$binary is not an executable. Fix: build it first (cargo build --release -p kubectl-listacompra)."

mkdir -p "$out"
archive="kubectl-listacompra_${version}_${os}_${arch}.tar.gz"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
install -m 0755 "$binary" "$stage/kubectl-listacompra"
install -m 0644 "$LC_REPO/LICENSE" "$stage/LICENSE"
# Reproducible: fixed owner, order and times.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='2026-01-01 00:00:00Z' \
  -C "$stage" -czf "$out/$archive" kubectl-listacompra LICENSE
sha=$(sha256sum "$out/$archive" | cut -d' ' -f1)

cat > "$out/listacompra.yaml" <<YAML
apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: listacompra
spec:
  version: $version
  homepage: https://example.invalid/listacompra
  shortDescription: Follow, gate and drive ListaCompraReleases
  description: |
    Drives releases of the ListaCompra API made by the ListaCompra release operator:
    a live tree of a release (get -w), a status that waits for the verdict and exits
    non-zero when the release rolled back (a pipeline's gate), approvals as yourself,
    retry, pause, resume, abort and history.
  platforms:
    - selector:
        matchLabels:
          os: $os
          arch: $arch
      uri: $base_url/$archive
      sha256: $sha
      bin: kubectl-listacompra
      files:
        - from: kubectl-listacompra
          to: .
        - from: LICENSE
          to: .
YAML
log "wrote $out/listacompra.yaml for $out/$archive (sha256 $sha)"
