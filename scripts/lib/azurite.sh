#!/usr/bin/env bash
# Azurite, the Azure Storage emulator the blob-lease rotation lock is tested against (crates/rotation/tests/blob_lock.rs).
# shellcheck shell=bash
#
# Sourced by scripts/test (after common.sh): `azurite_install` once, then `azurite_start` with `trap azurite_stop EXIT`.
# Run directly, it wraps one command for a developer:
#   scripts/lib/azurite.sh cargo nextest run -p keyturn-rotation
#
# Azurite is pinned in package.json/package-lock.json and installed by `npm ci` into ./node_modules. It runs the blob
# service only, on 127.0.0.1 with a port the OS picks, over HTTPS with a leaf certificate from a fresh local CA
# (`local-ca`, crates/local), with `--oauth basic`: requests must carry a bearer token whose issuer, audience and
# lifetime Azurite checks (not its signature), which the local identity endpoint's tokens satisfy. Storage is in
# memory and telemetry is off: nothing leaves the machine and nothing outlives the run.
#
# The tests find it through:
#   KEYTURN_TEST_AZURITE_BLOB_URL  the account's blob endpoint, https://127.0.0.1:<port>/devstoreaccount1
#   KEYTURN_TEST_AZURITE_CA_FILE   the CA certificate (PEM) to trust for it

azurite_install() {
  require npm "Node.js and npm install Azurite for the blob-lease lock tests (Debian: apt-get install npm)."
  [ -f package-lock.json ] || die "package-lock.json is missing: Azurite is installed from it with npm ci"
  local stamp
  stamp="node_modules/.keyturn-installed-$(sha256sum package-lock.json | cut -c1-16)"
  if [ ! -f "$stamp" ] || [ ! -x node_modules/.bin/azurite-blob ]; then
    # npm ci removes node_modules first, so an old stamp never survives a reinstall.
    npm ci --no-audit --no-fund --loglevel=error || die "npm ci (Azurite, from package-lock.json) failed"
    [ -x node_modules/.bin/azurite-blob ] || die "npm ci finished but node_modules/.bin/azurite-blob is missing"
    touch "$stamp"
  fi
}

AZURITE_PID=

azurite_start() {
  local dir=$PWD/.test-state/azurite bin=$PWD/node_modules/.bin/azurite-blob
  rm -rf "$dir"
  mkdir -p "$dir"
  cargo run --quiet -p keyturn-local --bin local-ca -- "$dir/tls" || die "generating Azurite's TLS certificate failed"
  # Azurite writes its workspace files to its working directory; keep them in the run's state dir.
  (cd "$dir" && exec "$bin" \
    --blobHost 127.0.0.1 --blobPort 0 \
    --cert "$dir/tls/leaf.pem" --key "$dir/tls/leaf-key.pem" --oauth basic \
    --inMemoryPersistence --disableTelemetry) >"$dir/azurite.log" 2>&1 &
  AZURITE_PID=$!
  local url="" waited=0
  while [ -z "$url" ]; do
    if ! kill -0 "$AZURITE_PID" 2>/dev/null; then
      AZURITE_PID=
      die "Azurite exited during start; its log ($dir/azurite.log):
$(tail -n 20 "$dir/azurite.log")"
    fi
    [ "$waited" -lt 300 ] || die "Azurite did not report its address within 30 s; its log: $(tail -n 20 "$dir/azurite.log")"
    url=$(grep -o 'successfully listens on https://127\.0\.0\.1:[0-9]*' "$dir/azurite.log" | grep -o 'https://.*' || true)
    [ -n "$url" ] || { sleep 0.1; waited=$((waited + 1)); }
  done
  export KEYTURN_TEST_AZURITE_BLOB_URL="$url/devstoreaccount1"
  export KEYTURN_TEST_AZURITE_CA_FILE="$dir/tls/keyturn-local-ca.pem"
  printf 'azurite: %s (pid %s, log %s)\n' "$KEYTURN_TEST_AZURITE_BLOB_URL" "$AZURITE_PID" "$dir/azurite.log" >&2
}

azurite_stop() {
  [ -n "$AZURITE_PID" ] || return 0
  kill "$AZURITE_PID" 2>/dev/null || true
  wait "$AZURITE_PID" 2>/dev/null || true
  AZURITE_PID=
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  cd "$(dirname "$0")/../.."
  source scripts/lib/common.sh
  [ "$#" -gt 0 ] || die "usage: scripts/lib/azurite.sh <command> [args...]   (runs the command with Azurite up)"
  azurite_install
  trap azurite_stop EXIT
  azurite_start
  "$@"
fi
