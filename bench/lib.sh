# bench/lib.sh: what the bench/e2e-*.sh scripts share. Sourced, not run.
# A temp dir ($tmp), the processes a script starts (append their pids to
# pids: all are killed on exit, also on Ctrl-C), free loopback ports, and
# a fresh PostgreSQL database per run on the cluster of $PG_DSN.

tmp=$(mktemp -d "/tmp/ldapgate-$(basename "$0" .sh).XXXXXX")
pids=()
pg_db= # the database pg_fresh made, dropped by pg_drop or on exit

cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null || true
	done
	pg_drop
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { # a free loopback port, from the kernel
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

pg_fresh() { # a new database on PG_DSN's cluster; its DSN in $tmp/pg_dsn
	pg_db=ldapgate_bench_$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
	timeout 60 psql -q -d "$PG_DSN" -c "CREATE DATABASE $pg_db" >/dev/null
	python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' \
		"$PG_DSN" "$pg_db" >"$tmp/pg_dsn"
}

pg_drop() {
	[ -n "$pg_db" ] || return 0
	timeout 60 psql -q -d "$PG_DSN" -c "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null || true
	pg_db=
}
