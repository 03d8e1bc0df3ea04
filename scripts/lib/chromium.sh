#!/usr/bin/env bash
# Chromium, the real browser `keyturn check --html`'s report is tested in (tests/e2e/tests/check_report.rs).
# shellcheck shell=bash
#
# Sourced by scripts/test (after common.sh): `chromium_install` once. Run directly, it wraps one command for a
# developer:
#   scripts/lib/chromium.sh cargo nextest run -p keyturn-e2e --test check_report
#
# Debian's `chromium` package is installed if no `chromium` is found (CI runs as root). The test drives it through
# the DevTools protocol over a pipe (--remote-debugging-pipe, from a Python helper using the standard library only),
# so neither chromedriver nor selenium is needed. It finds the browser through:
#   KEYTURN_TEST_CHROMIUM   the browser executable (set here to the one found or installed)

chromium_install() {
  local found
  found=$(command -v chromium 2>/dev/null || true)
  if [ -z "$found" ]; then
    apt_install chromium "the HTML report test (tests/e2e/tests/check_report.rs)"
    found=$(command -v chromium 2>/dev/null || true)
    [ -n "$found" ] || die "the chromium package is installed but no 'chromium' is on PATH"
  fi
  "$found" --version >/dev/null 2>&1 || die "$found does not run: '$found --version' failed"
  export KEYTURN_TEST_CHROMIUM=$found
  printf 'chromium: %s (%s)\n' "$found" "$("$found" --version 2>/dev/null)" >&2
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  cd "$(dirname "$0")/../.."
  source scripts/lib/common.sh
  [ "$#" -gt 0 ] || die "usage: scripts/lib/chromium.sh <command> [args...]   (runs the command with Chromium installed)"
  chromium_install
  "$@"
fi
