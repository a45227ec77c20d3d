#!/usr/bin/env bash
# What molt's tests and demo need on this machine, installed and started when absent:
# Docker Engine and compose, a static busybox (test and example images are built FROM scratch:
# no registry is reachable), MariaDB (the host's mariadbd also goes into the example product's
# database image; the schema tests use the server), minisign and curl.
# Safe to run on a fresh machine (Debian with a Rust toolchain) and again on a prepared one.
# Writes target/molt-test-database.url (a TCP user made for this run).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*" >&2; }

# --- tools the tests need -------------------------------------------------------------
need_apt=()
command -v sha256sum >/dev/null || need_apt+=(coreutils)
# static busybox: the tests build their images FROM scratch with it (no registry is reachable)
[ -x /bin/busybox ] && file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' || need_apt+=(busybox-static)
command -v file >/dev/null || need_apt+=(file)
command -v docker >/dev/null || need_apt+=(docker.io)
# compose: v2 (`docker compose`) when the host has it, else Debian's v1 `docker-compose`
docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null || need_apt+=(docker-compose)
command -v mount >/dev/null || need_apt+=(mount)
# ip: molt announces a started container to the host's neighbour table (and a test checks it)
command -v ip >/dev/null || need_apt+=(iproute2)
# the release tests check signature interop with the minisign tool and compare with curl
command -v minisign >/dev/null || need_apt+=(minisign)
command -v curl >/dev/null || need_apt+=(curl)
# peak memory of a child (metadata attack tests)
[ -x /usr/bin/time ] || need_apt+=(time)
command -v strace >/dev/null || need_apt+=(strace)   # the journal's power-loss test
command -v systemd-analyze >/dev/null || need_apt+=(systemd)   # units checked by systemd-analyze verify
command -v musl-gcc >/dev/null || need_apt+=(musl-tools)   # the static binary (scripts/package.sh)
# the fleet test reaches one host over ssh (an sshd of its own, started by the test)
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v ssh-keygen >/dev/null || need_apt+=(openssh-client)
command -v dpkg-deb >/dev/null || need_apt+=(dpkg)
# the schema tests run against a real MariaDB server
[ -x /usr/sbin/mariadbd ] || need_apt+=(mariadb-server)
command -v mariadb >/dev/null || need_apt+=(mariadb-client)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

# --- services the tests need ------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
  log "starting the docker daemon"
  (service docker start || (nohup dockerd >/var/log/molt-test-dockerd.log 2>&1 &)) >/dev/null 2>&1 || true
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "the docker daemon does not answer; the Docker tests cannot run" >&2; exit 1; }
fi
if ! mariadb -e 'SELECT 1' >/dev/null 2>&1; then
  log "starting MariaDB"
  install -d -o mysql -g mysql /run/mysqld
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >/dev/null
  # a pid file: the example product runs the host's mariadbd in containers, which an --exec match would take for this server
  start-stop-daemon --start --background --make-pidfile --pidfile /run/mysqld/molt-test.pid --exec /usr/sbin/mariadbd -- --user=mysql
  for _ in $(seq 1 60); do mariadb -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 1; done
  mariadb -e 'SELECT 1' >/dev/null 2>&1 || { echo "MariaDB does not answer; the schema tests cannot run" >&2; exit 1; }
fi
# A TCP user for the tests (root logs in over the socket only), with a password made for this run.
mkdir -p target
db_password=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
mariadb -e "CREATE USER IF NOT EXISTS 'molt_test'@'127.0.0.1' IDENTIFIED BY '$db_password';
            ALTER USER 'molt_test'@'127.0.0.1' IDENTIFIED BY '$db_password';
            GRANT ALL PRIVILEGES ON *.* TO 'molt_test'@'127.0.0.1';"
MOLT_TEST_DATABASE_URL="mysql://molt_test:$db_password@127.0.0.1:3306/"
export MOLT_TEST_DATABASE_URL
printf '%s\n' "$MOLT_TEST_DATABASE_URL" > target/molt-test-database.url
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt || true
# the static binary of scripts/package.sh
rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl || rustup target add x86_64-unknown-linux-musl
# Ansible for the fleet role's test (ansible/), from PyPI into target/ansible
if [ ! -x target/ansible/bin/ansible-playbook ]; then
  log "installing ansible-core into target/ansible"
  python3 -m venv target/ansible
  target/ansible/bin/pip install -q "ansible-core==2.17.*"
fi
