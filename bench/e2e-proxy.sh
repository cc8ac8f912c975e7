#!/usr/bin/env bash
# End-to-end proxy benchmark (issue 14): requests with a session through the
# built binary (`ldapgate serve`, a local user logged in through
# /auth/v4/public/token, wrk sending that cookie), against two baselines in
# front of the same trivial upstream, alternating in every round:
#
#   nginx: nginx tuned as an operator tunes it: upstream keepalive 64,
#     proxy_http_version 1.1, the X-Forwarded-* headers ldapgate also sets
#     (2 workers, access log off);
#   bare: bench/bareproxy, a fasthttp reverse proxy of ~30 lines (no
#     session, no header rules), the floor for a fasthttp-based proxy.
#
#   bench/e2e-proxy.sh                          # 5 rounds of wrk -t1 -c32 -d4s
#   ROUNDS=9 DURATION=10s bench/e2e-proxy.sh
#   PPROF=1 bench/e2e-proxy.sh                  # + CPU profiles of ldapgate and bare
#   BARE_STREAM=1 bench/e2e-proxy.sh            # the bare proxy streams bodies too
#   PG_DSN=postgres://... bench/e2e-proxy.sh     # + ldapgate on store.backend: postgres
#                                               # (a fresh database on that cluster;
#                                               # scripts/test-pg.sh start DIR makes one)
#
# Prints requests/second and CPU time per request of each proxy (from
# /proc, nginx's two workers summed), and the ratios of the same round.
# Needs: go, nginx (nginx-light), wrk, curl, bc. Everything listens on
# 127.0.0.1; every process started is killed on exit.
set -euo pipefail

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-4s}
THREADS=${THREADS:-1}
CONNS=${CONNS:-32}
PPROF=${PPROF:-}

root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/lib.sh"

for cmd in go nginx wrk curl bc python3; do
	command -v "$cmd" >/dev/null || { echo "e2e-proxy.sh: $cmd not found" >&2; exit 1; }
done
PG_DSN=${PG_DSN:-}
up_port=$(free_port) gate_port=$(free_port) metrics_port=$(free_port) nginx_port=$(free_port)
pg_port=$(free_port) pg_metrics_port=$(free_port)
bare_port=$(free_port) bare_pprof=$(free_port)

echo "building..." >&2
(cd "$root" && CGO_ENABLED=0 go build -trimpath -o "$tmp/ldapgate" . &&
	go build -o "$tmp/upstream" ./proxy/bench/upstream && go build -o "$tmp/bareproxy" ./bench/bareproxy)

"$tmp/upstream" -listen "127.0.0.1:$up_port" & pids+=($!)
# BARE_STREAM=1: the bare proxy streams bodies both ways, as ldapgate
# must; what that costs is then out of the ldapgate/bare ratio.
"$tmp/bareproxy" -listen "127.0.0.1:$bare_port" -upstream "127.0.0.1:$up_port" ${BARE_STREAM:+-stream} \
	${PPROF:+-pprof "127.0.0.1:$bare_pprof"} 2>"$tmp/bare.log" & pids+=($!)
bare_pid=$!

hash=$(echo bench-password | "$tmp/ldapgate" hash-password)
cat >"$tmp/ldapgate.yaml" <<YAML
listen: "127.0.0.1:$gate_port"
metrics_listen: "127.0.0.1:$metrics_port"
${PPROF:+pprof: true}
upstream: "http://127.0.0.1:$up_port"
data_dir: "$tmp/data"
log_level: warn
session: {secure_cookie: false}
local_users:
  - {username: bench@local, password_hash: '$hash', role: user}
YAML
"$tmp/ldapgate" serve -config "$tmp/ldapgate.yaml" 2>"$tmp/gate.log" & pids+=($!)
gate_pid=$!

# The same ldapgate on a PostgreSQL store (SPEC §12): a session check is
# still a memory hit there; this shows what the shared store costs.
if [ -n "$PG_DSN" ]; then
	pg_fresh
	sed -e "s/127.0.0.1:$gate_port/127.0.0.1:$pg_port/; s/127.0.0.1:$metrics_port/127.0.0.1:$pg_metrics_port/" \
		"$tmp/ldapgate.yaml" >"$tmp/ldapgate-pg.yaml"
	printf 'store: {backend: postgres, postgres: {dsn_file: "%s"}}\n' "$tmp/pg_dsn" >>"$tmp/ldapgate-pg.yaml"
	"$tmp/ldapgate" serve -config "$tmp/ldapgate-pg.yaml" 2>"$tmp/gate-pg.log" & pids+=($!)
	pg_pid=$!
fi

mkdir -p "$tmp/nginx"
cat >"$tmp/nginx/nginx.conf" <<NGINX
worker_processes 2;
daemon off;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path $tmp/nginx/body;
	proxy_temp_path $tmp/nginx/proxy;
	fastcgi_temp_path $tmp/nginx/fastcgi;
	uwsgi_temp_path $tmp/nginx/uwsgi;
	scgi_temp_path $tmp/nginx/scgi;
	upstream platform {
		server 127.0.0.1:$up_port;
		keepalive 64;
	}
	server {
		listen 127.0.0.1:$nginx_port;
		location / {
			proxy_pass http://platform;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
			proxy_set_header X-Forwarded-Proto \$scheme;
			proxy_set_header X-Forwarded-Host \$host;
		}
	}
}
NGINX
nginx -c "$tmp/nginx/nginx.conf" -p "$tmp/nginx" & pids+=($!)
nginx_pid=$!

wait_port() {
	for _ in $(seq 200); do
		if curl -sS -m 2 -o /dev/null "http://127.0.0.1:$1/" 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "e2e-proxy.sh: nothing answers on port $1" >&2
	exit 1
}
for p in "$up_port" "$gate_port" "$nginx_port" "$bare_port" ${PG_DSN:+"$pg_port"}; do wait_port "$p"; done

session=$(curl -fsS -m 30 -X POST "http://127.0.0.1:$gate_port/auth/v4/public/token" \
	-d '{"username":"bench@local","password":"bench-password"}' | sed 's/.*"token":"\([^"]*\)".*/\1/')
code=$(curl -s -m 30 -o /dev/null -w '%{http_code}' -H "Cookie: ldapgate_session=$session" "http://127.0.0.1:$gate_port/app/page")
[ "$code" = 200 ] || { echo "e2e-proxy.sh: the session does not pass ldapgate (HTTP $code)" >&2; exit 1; }
# The same request to all: a browser-like cookie (the session among others)
# so ldapgate's cookie rewrite runs, as it would in use.
hdr="Cookie: ldapgate_session=$session; theme=dark; lang=en"
if [ -n "$PG_DSN" ]; then
	pg_session=$(curl -fsS -m 30 -X POST "http://127.0.0.1:$pg_port/auth/v4/public/token" \
		-d '{"username":"bench@local","password":"bench-password"}' | sed 's/.*"token":"\([^"]*\)".*/\1/')
	pg_hdr="Cookie: ldapgate_session=$pg_session; theme=dark; lang=en"
fi

ticks() { # CPU ticks (user+system) of the given processes
	local t=0 p f
	for p in "$@"; do
		read -ra f < <(sed 's/.*) //' "/proc/$p/stat")
		t=$((t + f[11] + f[12]))
	done
	echo "$t"
}

run() { # port pids... -> "requests/second CPU-microseconds/request"
	local port=$1 out t0 t1 n
	shift
	t0=$(ticks "$@")
	out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" -H "$hdr" "http://127.0.0.1:$port/app/page?x=1")
	t1=$(ticks "$@")
	n=$(awk '/ requests in / {print $1}' <<<"$out")
	# A proxy that fails requests would look fast: stop.
	if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
		echo "e2e-proxy.sh: errors on port $port: $(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr -s ' ' | tr '\n' ';')" >&2
		exit 1
	fi
	echo "$(awk '/^Requests\/sec:/ {print $2}' <<<"$out") $(echo "($t1 - $t0) * 1000000 / $(getconf CLK_TCK) / $n" | bc -l)"
}

nginx_workers=$(pgrep -P "$nginx_pid" | tr '\n' ' ')
# shellcheck disable=SC2086 # one pid per word
{
	DURATION=2s run "$gate_port" "$gate_pid" >/dev/null
	DURATION=2s run "$nginx_port" $nginx_workers >/dev/null
	DURATION=2s run "$bare_port" "$bare_pid" >/dev/null
	if [ -n "$PG_DSN" ]; then hdr=$pg_hdr DURATION=2s run "$pg_port" "$pg_pid" >/dev/null; fi
}

if [ -n "$PPROF" ]; then
	secs=${PPROF_SECONDS:-4}
	curl -sS -m $((secs + 30)) -o "${PPROF_OUT:-/tmp}/e2e-proxy-ldapgate.pprof" "http://127.0.0.1:$metrics_port/debug/pprof/profile?seconds=$secs" &
	p1=$!
	DURATION=${secs}s run "$gate_port" "$gate_pid" >/dev/null
	wait "$p1"
	curl -sS -m $((secs + 30)) -o "${PPROF_OUT:-/tmp}/e2e-proxy-bare.pprof" "http://127.0.0.1:$bare_pprof/debug/pprof/profile?seconds=$secs" &
	p1=$!
	DURATION=${secs}s run "$bare_port" "$bare_pid" >/dev/null
	wait "$p1"
	cp "$tmp/ldapgate" "${PPROF_OUT:-/tmp}/e2e-proxy-ldapgate.bin"
	cp "$tmp/bareproxy" "${PPROF_OUT:-/tmp}/e2e-proxy-bare.bin"
	echo "profiles: ${PPROF_OUT:-/tmp}/e2e-proxy-{ldapgate,bare}.{pprof,bin}" >&2
fi

div() { echo "($1) / ($2)" | bc -l; }
echo "wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS rounds alternating; upstream answers \"ok\""
echo "nginx: upstream keepalive 64 + HTTP/1.1, 2 workers; bare: bench/bareproxy (fasthttp, no auth${BARE_STREAM:+, streaming bodies})"
gs=0 ns=0 bs=0 gc=0 nc=0 bc_=0
for i in $(seq "$ROUNDS"); do
	# Through a file, not < <(...): a failed run must stop the script.
	run "$gate_port" "$gate_pid" >"$tmp/r"
	read -r g gcpu <"$tmp/r"
	# shellcheck disable=SC2086
	run "$nginx_port" $nginx_workers >"$tmp/r"
	read -r n ncpu <"$tmp/r"
	run "$bare_port" "$bare_pid" >"$tmp/r"
	read -r b bcpu <"$tmp/r"
	printf 'round %d: ldapgate %6.0f req/s %5.1f us/req | nginx %6.0f req/s %5.1f us/req | bare %6.0f req/s %5.1f us/req | ldapgate/nginx %.2f, ldapgate/bare %.2f, bare/nginx %.2f\n' \
		"$i" "$g" "$gcpu" "$n" "$ncpu" "$b" "$bcpu" "$(div "$g" "$n")" "$(div "$g" "$b")" "$(div "$b" "$n")"
	if [ -n "$PG_DSN" ]; then
		hdr=$pg_hdr run "$pg_port" "$pg_pid" >"$tmp/r"
		read -r pgr pgcpu <"$tmp/r"
		printf '         ldapgate on postgres %6.0f req/s %5.1f us/req | postgres/badger %.2f\n' "$pgr" "$pgcpu" "$(div "$pgr" "$g")"
		ps_=$(echo "${ps_:-0} + $pgr" | bc -l) pc_=$(echo "${pc_:-0} + $pgcpu" | bc -l)
	fi
	gs=$(echo "$gs + $g" | bc -l) ns=$(echo "$ns + $n" | bc -l) bs=$(echo "$bs + $b" | bc -l)
	gc=$(echo "$gc + $gcpu" | bc -l) nc=$(echo "$nc + $ncpu" | bc -l) bc_=$(echo "$bc_ + $bcpu" | bc -l)
done
printf 'mean:    ldapgate %6.0f req/s %5.1f us/req | nginx %6.0f req/s %5.1f us/req | bare %6.0f req/s %5.1f us/req | ldapgate/nginx %.2f, ldapgate/bare %.2f, bare/nginx %.2f\n' \
	"$(div "$gs" "$ROUNDS")" "$(div "$gc" "$ROUNDS")" "$(div "$ns" "$ROUNDS")" "$(div "$nc" "$ROUNDS")" \
	"$(div "$bs" "$ROUNDS")" "$(div "$bc_" "$ROUNDS")" "$(div "$gs" "$ns")" "$(div "$gs" "$bs")" "$(div "$bs" "$ns")"
if [ -n "$PG_DSN" ]; then
	printf 'mean:    ldapgate on postgres %6.0f req/s %5.1f us/req | postgres/badger %.2f\n' \
		"$(div "$ps_" "$ROUNDS")" "$(div "$pc_" "$ROUNDS")" "$(div "$ps_" "$gs")"
fi
