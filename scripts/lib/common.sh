# Shared helpers for scripts/: sourced, not run.
# shellcheck shell=bash

step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
require() { command -v "$1" >/dev/null 2>&1 || die "'$1' is required but not installed. $2"; }

# Installs a Debian package for the tests (CI runs as root), or fails naming it: `apt_install <package> <what needs it>`.
apt_install() {
  local package=$1 needed_by=$2
  [ "$(id -u)" = 0 ] || die "$needed_by needs Debian's $package: apt-get install $package (as root)"
  step "installing $package (Debian package)"
  apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" >/dev/null \
    || die "apt-get install $package failed"
}

# cargo-nextest: the machine image ships it; otherwise build it from crates.io once.
ensure_nextest() {
  if ! cargo nextest --version >/dev/null 2>&1; then
    step "installing cargo-nextest from crates.io"
    cargo install --locked cargo-nextest
  fi
}

# A Python venv at .venv/NAME holding the packages of the given requirements files (installed in one pip call,
# so one resolver sees every pin), reused between runs until a requirements file changes. Separate venvs keep
# tools with clashing pins apart (checkov vs the Azure SDK for Python).
ensure_venv() {
  local name=$1; shift
  local venv=.venv/$name
  [ "$#" -gt 0 ] || die "ensure_venv $name: no requirements file given"
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  fi
  local stamp
  stamp="$venv/.installed-$(cat "$@" | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    local args=()
    for requirements in "$@"; do args+=(-r "$requirements"); done
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${args[@]}" \
      || die "pip install into $venv failed (${*})"
    rm -f "$venv"/.installed-*
    touch "$stamp"
  fi
}
