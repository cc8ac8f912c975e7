#!/usr/bin/env bash
# test-pg.sh start|stop STATE_DIR — a private PostgreSQL cluster on loopback
# for the store tests (cache/pgstore, cache/storetest, e2e; SPEC §12).
#
#   eval "$(scripts/test-pg.sh start /tmp/ldapgate-pg)"
#   go test ./cache/... 
#   scripts/test-pg.sh stop /tmp/ldapgate-pg
#
# start prints only `export LDAPGATE_TEST_PG_DSN=...` on stdout (everything
# else goes to stderr) and writes it to STATE_DIR/server.env too. It installs
# nothing: scripts/test.sh apt-installs Debian's postgresql.
#
# Why it looks like this:
#   - initdb into STATE_DIR with trust authentication for one role on
#     127.0.0.1 only: the cluster is throw-away and reachable from this host
#     alone, and tests need no password file.
#   - the unix socket lives inside STATE_DIR, so two clusters never collide
#     on /var/run/postgresql.
#   - postgres refuses to run as root: as root the server runs as the
#     postgres user and STATE_DIR is handed to it.
#   - each test creates its own database, so one cluster serves packages
#     running in parallel.
set -euo pipefail

cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop STATE_DIR" >&2; exit 2; }
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[ -n "$bin" ] || { echo "postgresql is not installed (/usr/lib/postgresql/*/bin)" >&2; exit 1; }

as_pg() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$cmd" in
start)
	mkdir -p "$dir"
	if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
	chmod 700 "$dir"
	if [ ! -s "$dir/data/PG_VERSION" ]; then
		as_pg "$bin/initdb" -D "$dir/data" -U ldapgate --auth=trust -E UTF8 --locale=C.UTF-8 >&2
	fi
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start -o \
		"-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >&2
	dsn="postgres://ldapgate@127.0.0.1:$port/postgres?sslmode=disable"
	echo "export LDAPGATE_TEST_PG_DSN='$dsn'" | tee "$dir/server.env"
	;;
stop)
	[ -d "$dir/data" ] || exit 0
	as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
	;;
*)
	echo "usage: $0 start|stop STATE_DIR" >&2; exit 2
	;;
esac
