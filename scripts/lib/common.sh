# Shared helpers for scripts/: sourced, not run.
# shellcheck shell=bash

step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
require() { command -v "$1" >/dev/null 2>&1 || die "'$1' is required but not installed. $2"; }

# cargo-nextest: the machine image ships it; otherwise build it from crates.io once.
ensure_nextest() {
  if ! cargo nextest --version >/dev/null 2>&1; then
    step "installing cargo-nextest from crates.io"
    cargo install --locked cargo-nextest
  fi
}

# A Python venv under .venv with the packages in the given requirements file, reused between runs.
ensure_venv() {
  local requirements=$1
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  fi
  local stamp=.venv/.installed-$(sha256sum "$requirements" | cut -c1-16)
  if [ ! -f "$stamp" ]; then
    .venv/bin/pip install --quiet --disable-pip-version-check -r "$requirements" \
      || die "pip install -r $requirements failed"
    touch "$stamp"
  fi
}
