#!/usr/bin/env bash
# PostgreSQL, the real server the postgres rotation providers are tested against (crates/rotation/tests/postgres*.rs).
# shellcheck shell=bash
#
# Sourced by scripts/test (after common.sh): `postgres_install` once, then `postgres_start`, and `postgres_stop` on
# exit. Run directly, it wraps one command for a developer:
#   scripts/lib/postgres.sh cargo nextest run -p keyturn-rotation --test postgres
#
# Debian's `postgresql` package is installed if no `initdb` is found (CI runs as root). A fresh cluster is made under
# .test-state/postgres on every run: TLS only (`hostssl` lines alone in pg_hba.conf, so a plain connection is refused)
# with a leaf certificate from a fresh local CA (`local-ca`, crates/local), SCRAM-SHA-256 passwords, listening on
# 127.0.0.1 on a port the OS picked, with its socket in the state dir. PostgreSQL refuses to run as root, so as root it
# runs as Debian's `postgres` user (runuser); as anyone else, as that user.
#
# The tests find it through:
#   KEYTURN_TEST_PG_HOST, KEYTURN_TEST_PG_PORT   where it listens (127.0.0.1, the port)
#   KEYTURN_TEST_PG_ADMIN_USER                   a superuser (keyturn_admin)
#   KEYTURN_TEST_PG_ADMIN_PASSWORD               its password, random per run
#   KEYTURN_TEST_PG_CA_FILE                      the CA certificate (PEM) that signed the server's certificate

PG_BIN=
PG_DATA=
PG_AS=()

postgres_install() {
  local initdb
  initdb=$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$initdb" ]; then
    apt_install postgresql "the postgres provider tests"
    initdb=$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
    [ -n "$initdb" ] || die "postgresql is installed but no initdb was found under /usr/lib/postgresql"
  fi
  PG_BIN=$(dirname "$(readlink -f "$initdb")")
}

# Runs a PostgreSQL program as the user the server runs as.
pg_as() { "${PG_AS[@]}" "$PG_BIN/$1" "${@:2}"; }

postgres_start() {
  [ -n "$PG_BIN" ] || die "postgres_start: call postgres_install first"
  local dir=$PWD/.test-state/postgres
  rm -rf "$dir"
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then
    getent passwd postgres >/dev/null || die "running as root, PostgreSQL needs the 'postgres' user (Debian's package creates it)"
    PG_AS=(runuser -u postgres --)
  else
    PG_AS=()
  fi
  cargo run --quiet -p keyturn-local --bin local-ca -- "$dir/tls" || die "generating PostgreSQL's TLS certificate failed"
  local password port
  password=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  printf '%s\n' "$password" >"$dir/pwfile"
  chmod 600 "$dir/pwfile" "$dir/tls/leaf-key.pem"
  if [ "$(id -u)" = 0 ]; then chown -R postgres: "$dir"; fi
  PG_DATA=$dir/data
  pg_as initdb -D "$PG_DATA" -U keyturn_admin --pwfile="$dir/pwfile" --auth=scram-sha-256 -E UTF8 --no-instructions \
    >"$dir/initdb.log" 2>&1 || die "initdb failed; its log ($dir/initdb.log): $(tail -n 20 "$dir/initdb.log")"
  rm -f "$dir/pwfile"
  # TLS only: no `host` line, so a connection without TLS finds no pg_hba entry and is refused.
  printf '%s\n' \
    'hostssl all all 127.0.0.1/32 scram-sha-256' \
    'hostssl all all ::1/128 scram-sha-256' >"$PG_DATA/pg_hba.conf"
  cat >>"$PG_DATA/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
ssl = on
ssl_cert_file = '$dir/tls/leaf.pem'
ssl_key_file = '$dir/tls/leaf-key.pem'
password_encryption = 'scram-sha-256'
max_connections = 200
log_statement = 'ddl'
EOF
  if [ "$(id -u)" = 0 ]; then chown postgres: "$PG_DATA/pg_hba.conf" "$PG_DATA/postgresql.conf"; fi
  pg_as pg_ctl -D "$PG_DATA" -l "$dir/postgres.log" -w -t 60 start >/dev/null \
    || die "PostgreSQL did not start; its log ($dir/postgres.log): $(tail -n 20 "$dir/postgres.log" 2>/dev/null)"
  export KEYTURN_TEST_PG_HOST=127.0.0.1
  export KEYTURN_TEST_PG_PORT=$port
  export KEYTURN_TEST_PG_ADMIN_USER=keyturn_admin
  export KEYTURN_TEST_PG_ADMIN_PASSWORD=$password
  export KEYTURN_TEST_PG_CA_FILE=$dir/tls/keyturn-local-ca.pem
  printf 'postgresql: 127.0.0.1:%s (data %s, log %s)\n' "$port" "$PG_DATA" "$dir/postgres.log" >&2
}

postgres_stop() {
  [ -n "$PG_DATA" ] || return 0
  # Immediate: the cluster is thrown away, so there is nothing to flush.
  pg_as pg_ctl -D "$PG_DATA" -m immediate -w stop >/dev/null 2>&1 || true
  PG_DATA=
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  cd "$(dirname "$0")/../.."
  source scripts/lib/common.sh
  [ "$#" -gt 0 ] || die "usage: scripts/lib/postgres.sh <command> [args...]   (runs the command with PostgreSQL up)"
  postgres_install
  trap postgres_stop EXIT
  postgres_start
  "$@"
fi
