#!/usr/bin/env bash
# Rebuild runtime/viewer_assets/three.min.js (the viewer's only library) from the npm registry at a
# pinned version: three.js core + GLTFLoader + OrbitControls, bundled and minified by esbuild into one
# classic script (global RECON3D) so pages opened from disk need no network and no module loading.
set -euo pipefail
cd "$(dirname "$0")/.."
THREE_VERSION=0.187.0
ESBUILD_VERSION=0.28.2
ASSETS=runtime/viewer_assets
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm init -y >/dev/null && npm install --no-audit --no-fund --silent "three@$THREE_VERSION" "esbuild@$ESBUILD_VERSION")
cp "$ASSETS/three-entry.js" "$WORK/entry.js"
"$WORK/node_modules/.bin/esbuild" "$WORK/entry.js" --bundle --minify --format=iife --global-name=RECON3D \
    --legal-comments=none --target=es2020 --outfile="$ASSETS/three.min.js"
cp "$WORK/node_modules/three/LICENSE" "$ASSETS/three.LICENSE"
echo "three@$THREE_VERSION (npm), bundled with esbuild@$ESBUILD_VERSION by scripts/vendor_three.sh" > "$ASSETS/three.VERSION"
ls -l "$ASSETS"
