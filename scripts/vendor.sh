#!/usr/bin/env bash
# Re-vendors the browser libraries pinned in package.json into static/vendor/ (no build step,
# no CDN): `npm ci && bash scripts/vendor.sh`, then review and commit static/vendor/.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm ci --no-audit --no-fund

vendor=static/vendor
# copy PACKAGE FILE... : the package's browser ES module (with its source map) and its license
copy() {
  local pkg=$1; shift
  local dest="$vendor/$pkg"
  rm -rf "$dest" && mkdir -p "$dest"
  for f in "$@"; do cp "node_modules/$pkg/$f" "$dest/"; done
  cp node_modules/"$pkg"/LICENSE* "$dest/"
}
copy socket.io-client dist/socket.io.esm.min.js dist/socket.io.esm.min.js.map
copy marked lib/marked.esm.js lib/marked.esm.js.map
copy dompurify dist/purify.es.mjs dist/purify.es.mjs.map
# The Socket.IO bundle inlines these MIT packages; keep their licenses next to it.
for dep in engine.io-client engine.io-parser socket.io-parser @socket.io/component-emitter; do
  cp "node_modules/$dep/LICENSE" "$vendor/socket.io-client/LICENSE.${dep##*/}"
done

# Print what was vendored, for static/vendor/README.md.
for pkg in socket.io-client marked dompurify; do
  node -e 'const p=require(`./node_modules/${process.argv[1]}/package.json`);
           console.log(`${p.name} ${p.version} ${p.license}`)' "$pkg"
done
