#!/usr/bin/env bash
# Unpacks (once) poppler's pdftotext from Debian 12's packages, pinned by version and sha256,
# into $PROSPECTOR_CACHE/poppler/<version> without installing anything system-wide, and prints a
# wrapper that runs it with its own libraries. pdftotext is the reference text of the extraction
# quality benchmark (hack/bench-extract-quality.sh) and its test.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

POPPLER_VERSION=22.12.0-2+deb12u3
# package=version sha256 (the .deb files apt-get download fetches; libopenjp2-7 is the one
# library libpoppler126 needs that a Debian 12 base lacks).
PACKAGES=(
  "poppler-utils=$POPPLER_VERSION 7e328919d626d9d988832eb1e4adff4ceed275abcdabcb61ec0b3bf2dc64260d"
  "libpoppler126=$POPPLER_VERSION f2a2737ea92f37f760d8d562d9ddc722ffb6072391987f36a3334c592df51818"
  "libopenjp2-7=2.5.0-2+deb12u3 a127e2f1741d66bdddb6393a718e3cbec327d53f88c89b859b1f8d73f64cf635"
)
dest="$PROSPECTOR_CACHE/poppler/$POPPLER_VERSION"
if [[ ! -x "$dest/pdftotext" ]]; then
  command -v apt-get >/dev/null || die "apt-get is needed to fetch poppler-utils $POPPLER_VERSION"
  log "fetching poppler-utils $POPPLER_VERSION"
  tmp="$(mktemp -d)"
  chmod 777 "$tmp"  # apt's sandbox user writes the downloads
  for entry in "${PACKAGES[@]}"; do
    spec="${entry% *}" sha="${entry#* }"
    (cd "$tmp" && apt-get download -q "$spec" >&2) || die "apt-get could not download $spec (run apt-get update?)"
    deb="$(ls "$tmp"/"${spec%%=*}"_*.deb)"
    verify_sha256 "$deb" "$sha"
    dpkg-deb -x "$deb" "$tmp/root"
  done
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
  mv "$tmp/root" "$dest.tmp/root"
  cat > "$dest.tmp/pdftotext" <<WRAP
#!/bin/sh
LD_LIBRARY_PATH="$dest/root/usr/lib/x86_64-linux-gnu\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$dest/root/usr/bin/pdftotext" "\$@"
WRAP
  chmod +x "$dest.tmp/pdftotext"
  rm -rf "$tmp" "$dest" && mv "$dest.tmp" "$dest"
fi
echo "$dest/pdftotext"
