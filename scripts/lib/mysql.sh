#!/usr/bin/env bash
# MariaDB, the real server the mysql rotation providers are tested against (crates/rotation/tests/mysql*.rs and
# tests/e2e/tests/providers_mysql.rs).
# shellcheck shell=bash
#
# Sourced by scripts/test (after common.sh): `mysql_install` once, then `mysql_start`, and `mysql_stop` on exit. Run
# directly, it wraps one command for a developer:
#   scripts/lib/mysql.sh cargo nextest run -p keyturn-rotation --test mysql
#
# Debian's `mariadb-server` package (MariaDB 10.11 on Debian 12: it speaks MySQL's protocol and its ALTER USER /
# CREATE USER / SHOW GRANTS) is installed if no `mariadbd` is found (CI runs as root). A fresh server is made under
# .test-state/mysql on every run: TLS only (require_secure_transport, so a plain TCP login is refused) with a leaf
# certificate from a fresh local CA (`local-ca`, crates/local), listening on 127.0.0.1 on a port the OS picked, with
# its socket in the state dir. mariadbd runs as root only when told so (--user=root); as anyone else, as that user.
# The admin is created over the socket (root@localhost authenticates by unix_socket, and socket logins are not
# subject to require_secure_transport); everything keyturn does goes over TLS.
#
# The tests find it through:
#   KEYTURN_TEST_MYSQL_HOST, KEYTURN_TEST_MYSQL_PORT   where it listens (127.0.0.1, the port)
#   KEYTURN_TEST_MYSQL_ADMIN_USER                      an admin login (keyturn_admin@'%', all privileges)
#   KEYTURN_TEST_MYSQL_ADMIN_PASSWORD                  its password, random per run
#   KEYTURN_TEST_MYSQL_CA_FILE                         the CA certificate (PEM) that signed the server's certificate
#   KEYTURN_TEST_MYSQL_SOCKET                          the server's unix socket (root, for test setup only)

MYSQL_DIR=
MYSQL_PID=

mysql_install() {
  if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
    # The package's own service is not wanted (containers without policy-rc.d do not start it): mysql_start makes
    # a throwaway server of its own.
    apt_install mariadb-server "the mysql provider tests"
  fi
  command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] \
    || die "mariadb-server is installed but no mariadbd was found"
  require mariadb-install-db "Debian: apt-get install mariadb-server"
  require mariadb "Debian: apt-get install mariadb-client"
}

mysqld_path() { command -v mariadbd 2>/dev/null || echo /usr/sbin/mariadbd; }

# Runs SQL as root over the server's socket (setup only; tests log in over TLS).
mysql_root() { mariadb --no-defaults --socket="$MYSQL_DIR/mysqld.sock" -u root --batch --skip-column-names "$@"; }

mysql_start() {
  local dir=$PWD/.test-state/mysql
  rm -rf "$dir"
  mkdir -p "$dir/data"
  cargo run --quiet -p keyturn-local --bin local-ca -- "$dir/tls" || die "generating MariaDB's TLS certificate failed"
  chmod 600 "$dir/tls/leaf-key.pem"
  local user password port
  user=$(id -un)
  password=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  MYSQL_DIR=$dir
  mariadb-install-db --no-defaults --user="$user" --datadir="$dir/data" --auth-root-authentication-method=socket \
    --skip-test-db >"$dir/install-db.log" 2>&1 \
    || die "mariadb-install-db failed; its log ($dir/install-db.log): $(tail -n 20 "$dir/install-db.log")"
  "$(mysqld_path)" --no-defaults --user="$user" --datadir="$dir/data" \
    --bind-address=127.0.0.1 --port="$port" --socket="$dir/mysqld.sock" --pid-file="$dir/mysqld.pid" \
    --log-error="$dir/mysqld.log" --skip-name-resolve --max-connections=300 \
    --ssl-ca="$dir/tls/keyturn-local-ca.pem" --ssl-cert="$dir/tls/leaf.pem" --ssl-key="$dir/tls/leaf-key.pem" \
    --require-secure-transport=ON --tls-version=TLSv1.2,TLSv1.3 \
    >/dev/null 2>&1 &
  MYSQL_PID=$!
  local waited=0
  until mysql_root -e 'SELECT 1' >/dev/null 2>&1; do
    kill -0 "$MYSQL_PID" 2>/dev/null \
      || die "MariaDB did not start; its log ($dir/mysqld.log): $(tail -n 20 "$dir/mysqld.log" 2>/dev/null)"
    [ "$waited" -lt 600 ] || die "MariaDB did not answer within 60 s; its log: $dir/mysqld.log"
    sleep 0.1
    waited=$((waited + 1))
  done
  # The admin keyturn's tests log in as: every privilege, from anywhere, over TLS only.
  mysql_root -e "CREATE USER 'keyturn_admin'@'%' IDENTIFIED BY '$password' REQUIRE SSL;
    GRANT ALL PRIVILEGES ON *.* TO 'keyturn_admin'@'%' WITH GRANT OPTION;" \
    || die "creating MariaDB's admin login failed"
  export KEYTURN_TEST_MYSQL_HOST=127.0.0.1
  export KEYTURN_TEST_MYSQL_PORT=$port
  export KEYTURN_TEST_MYSQL_ADMIN_USER=keyturn_admin
  export KEYTURN_TEST_MYSQL_ADMIN_PASSWORD=$password
  export KEYTURN_TEST_MYSQL_CA_FILE=$dir/tls/keyturn-local-ca.pem
  export KEYTURN_TEST_MYSQL_SOCKET=$dir/mysqld.sock
  printf 'mariadb: 127.0.0.1:%s (data %s, log %s)\n' "$port" "$dir/data" "$dir/mysqld.log" >&2
}

mysql_stop() {
  [ -n "$MYSQL_PID" ] || return 0
  # The server is thrown away, so there is nothing to flush: end the one process this script started.
  kill -KILL "$MYSQL_PID" 2>/dev/null || true
  wait "$MYSQL_PID" 2>/dev/null || true
  MYSQL_PID=
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  cd "$(dirname "$0")/../.."
  source scripts/lib/common.sh
  [ "$#" -gt 0 ] || die "usage: scripts/lib/mysql.sh <command> [args...]   (runs the command with MariaDB up)"
  mysql_install
  trap mysql_stop EXIT
  mysql_start
  "$@"
fi
