#!/usr/bin/env bash
# Benchmark (a), issue 4: requests/second through ldapgate against nginx
# doing a plain proxy_pass, both in front of the same trivial upstream,
# measured alternately in one run so machine noise hits all alike.
#
# Two nginx baselines, both in the one nginx (2 workers, access log off):
#   nginx-plain: `proxy_pass http://127.0.0.1:PORT;` and nothing else, the
#     issue's wording: HTTP/1.0 to the upstream, a new connection per request.
#   nginx-ka: upstream keepalive 64, proxy_http_version 1.1 and the
#     X-Forwarded-* headers ldapgate also sets: the stronger baseline.
#
# GATE=ldapgate (default): the real binary (`ldapgate serve`), a local user
# logged in through /auth/v4/public/token, and wrk sending that session
# cookie: every request runs the whole front (session check, routing,
# header stripping, metrics) before the proxy.
# GATE=proxy: proxy/bench/gate, the proxy alone with a fixed user.
#
#   proxy/bench/wrk.sh            # 3 rounds each, wrk -t2 -c64 -d10s
#   ROUNDS=5 DURATION=20s proxy/bench/wrk.sh
#   GATE_GOMAXPROCS=1 proxy/bench/wrk.sh   # GOMAXPROCS of the gate process
#   PERF=1 proxy/bench/wrk.sh               # also syscalls per request (perf stat)
#
# Needs: go, nginx (Debian nginx-light), wrk. Everything listens on
# 127.0.0.1 and is killed on exit.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
UP_PORT=${UP_PORT:-18081}
GATE_PORT=${GATE_PORT:-18080}
NGINX_PORT=${NGINX_PORT:-18082}
METRICS_PORT=${METRICS_PORT:-18083}
NGINX_PLAIN_PORT=${NGINX_PLAIN_PORT:-18084}
GATE=${GATE:-ldapgate}
GATE_GOMAXPROCS=${GATE_GOMAXPROCS:-}
PERF=${PERF:-}

root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

for cmd in go nginx wrk ${PERF:+perf}; do
	command -v "$cmd" >/dev/null || { echo "wrk.sh: $cmd not found" >&2; exit 1; }
done

(cd "$root" && go build -o "$tmp/upstream" ./proxy/bench/upstream && go build -o "$tmp/gate" ./proxy/bench/gate &&
	go build -o "$tmp/ldapgate" .)

"$tmp/upstream" -listen "127.0.0.1:$UP_PORT" & pids+=($!)
if [ -n "$GATE_GOMAXPROCS" ]; then export GOMAXPROCS=$GATE_GOMAXPROCS; fi
if [ "$GATE" = ldapgate ]; then
	hash=$(echo bench-password | "$tmp/ldapgate" hash-password)
	cat >"$tmp/ldapgate.yaml" <<EOF
listen: "127.0.0.1:$GATE_PORT"
metrics_listen: "127.0.0.1:$METRICS_PORT"
upstream: "http://127.0.0.1:$UP_PORT"
data_dir: "$tmp/data"
log_level: warn
session: {secure_cookie: false}
local_users:
  - {username: bench@local, password_hash: '$hash', role: user}
EOF
	"$tmp/ldapgate" serve -config "$tmp/ldapgate.yaml" 2>"$tmp/gate.log" & pids+=($!)
else
	"$tmp/gate" -listen "127.0.0.1:$GATE_PORT" -upstream "http://127.0.0.1:$UP_PORT" 2>"$tmp/gate.log" & pids+=($!)
fi
gate_pid=$!
unset GOMAXPROCS

mkdir -p "$tmp/nginx"
cat >"$tmp/nginx/nginx.conf" <<EOF
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
		server 127.0.0.1:$UP_PORT;
		keepalive 64;
	}
	server {
		listen 127.0.0.1:$NGINX_PORT;
		location / {
			proxy_pass http://platform;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
			proxy_set_header X-Forwarded-Proto \$scheme;
			proxy_set_header X-Forwarded-Host \$host;
		}
	}
	server {
		listen 127.0.0.1:$NGINX_PLAIN_PORT;
		location / {
			proxy_pass http://127.0.0.1:$UP_PORT;
		}
	}
}
EOF
nginx -c "$tmp/nginx/nginx.conf" -p "$tmp/nginx" & pids+=($!)
nginx_pid=$!

wait_port() {
	for _ in $(seq 100); do
		if curl -sS -o /dev/null "http://127.0.0.1:$1/" 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "wrk.sh: nothing answers on port $1" >&2
	exit 1
}
wait_port "$UP_PORT"
wait_port "$GATE_PORT"
wait_port "$NGINX_PORT"
wait_port "$NGINX_PLAIN_PORT"

# The same request to both: a browser-like cookie (the session cookie
# among others) so ldapgate's cookie rewrite runs, as it would in use.
session=0123456789abcdef0123456789abcdef
if [ "$GATE" = ldapgate ]; then
	session=$(curl -fsS -X POST "http://127.0.0.1:$GATE_PORT/auth/v4/public/token" \
		-d '{"username":"bench@local","password":"bench-password"}' | sed 's/.*"token":"\([^"]*\)".*/\1/')
	code=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: ldapgate_session=$session" "http://127.0.0.1:$GATE_PORT/app/page")
	[ "$code" = 200 ] || { echo "wrk.sh: the session does not pass ldapgate (HTTP $code)" >&2; exit 1; }
fi
hdr="Cookie: ldapgate_session=$session; theme=dark; lang=en"

# CPU ticks (user+system) of the given processes, from /proc.
ticks() {
	local t=0 p f
	for p in "$@"; do
		read -ra f < <(sed 's/.*) //' "/proc/$p/stat")
		t=$((t + f[11] + f[12]))
	done
	echo "$t"
}

# Syscall tracepoints counted by PERF=1: Go reads with read(2), nginx with
# recvfrom(2); reads that found nothing (EAGAIN) are counted apart.
perf_events=(
	-e syscalls:sys_enter_read -e syscalls:sys_enter_recvfrom
	-e syscalls:sys_exit_read --filter 'ret == -11' -e syscalls:sys_exit_recvfrom --filter 'ret == -11'
	-e syscalls:sys_enter_write -e syscalls:sys_enter_writev
	-e syscalls:sys_enter_epoll_wait -e syscalls:sys_enter_epoll_pwait -e syscalls:sys_enter_futex
	-e syscalls:sys_enter_nanosleep
)

run() { # port pids... -> "requests/second CPU-microseconds/request" of pids
	local port=$1 out t0 t1 n perf_pid=
	shift
	if [ -n "$PERF" ]; then
		perf stat -x, -o "$tmp/perf.$port" "${perf_events[@]}" -p "$(echo "$@" | tr ' ' ,)" &
		perf_pid=$!
		sleep 0.2
	fi
	t0=$(ticks "$@")
	out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" -H "$hdr" "http://127.0.0.1:$port/app/page?x=1")
	t1=$(ticks "$@")
	n=$(awk '/ requests in / {print $1}' <<<"$out")
	if [ -n "$perf_pid" ]; then
		kill -INT "$perf_pid"
		wait "$perf_pid" || true
		# read(+recvfrom), of them EAGAIN, write(+writev), epoll waits, futex, nanosleep; per request
		awk -F, -v n="$n" '/syscalls:/ {
				e = $3; sub(/.*:sys_(enter|exit)_/, "", e)
				if ($3 ~ /exit/) k = "eagain"; else if (e ~ /^(read|recvfrom)$/) k = "read"
				else if (e ~ /^write/) k = "write"; else if (e ~ /^epoll/) k = "epoll"; else k = e
				c[k] += $1
			}
			END { printf "read %.2f (EAGAIN %.2f) write %.2f epoll %.2f futex %.2f nanosleep %.2f", c["read"]/n, c["eagain"]/n, c["write"]/n, c["epoll"]/n, c["futex"]/n, c["nanosleep"]/n }' \
			"$tmp/perf.$port" >"$tmp/perf.$port.sum"
	fi
	# A baseline that fails requests (e.g. out of ephemeral ports) would
	# look fast: say so.
	if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
		echo "wrk.sh: errors on port $port: $(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr -s ' ' | tr '\n' ';')" >&2
	fi
	echo "$(awk '/^Requests\/sec:/ {print $2}' <<<"$out") $(echo "($t1 - $t0) * 1000000 / $(getconf CLK_TCK) / $n" | bc -l)"
}

nginx_workers=$(pgrep -P "$nginx_pid" | tr '\n' ' ')

# A short warm-up of each, unmeasured.
DURATION=2s run "$GATE_PORT" "$gate_pid" >/dev/null
# shellcheck disable=SC2086 # one pid per word
DURATION=2s run "$NGINX_PLAIN_PORT" $nginx_workers >/dev/null
# shellcheck disable=SC2086
DURATION=2s run "$NGINX_PORT" $nginx_workers >/dev/null

echo "wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS rounds alternating, upstream answers \"ok\", gate: $GATE${GATE_GOMAXPROCS:+ GOMAXPROCS=$GATE_GOMAXPROCS}"
echo "nginx-plain: bare proxy_pass (HTTP/1.0 upstream, no keepalive); nginx-ka: upstream keepalive 64 + HTTP/1.1"
div() { echo "$1 / $2" | bc -l; }
gsum=0 psum=0 ksum=0 gcsum=0 pcsum=0 kcsum=0
for i in $(seq "$ROUNDS"); do
	read -r g gcpu < <(run "$GATE_PORT" "$gate_pid")
	# shellcheck disable=SC2086
	read -r p pcpu < <(run "$NGINX_PLAIN_PORT" $nginx_workers)
	# shellcheck disable=SC2086
	read -r k kcpu < <(run "$NGINX_PORT" $nginx_workers)
	printf 'round %d: ldapgate %6.0f req/s %5.1f us/req | nginx-plain %6.0f req/s %5.1f us/req | nginx-ka %6.0f req/s %5.1f us/req | ratio vs plain %.2f, vs ka %.2f\n' \
		"$i" "$g" "$gcpu" "$p" "$pcpu" "$k" "$kcpu" "$(div "$g" "$p")" "$(div "$g" "$k")"
	if [ -n "$PERF" ]; then
		printf '   syscalls/req: ldapgate %s | nginx-plain %s | nginx-ka %s\n' \
			"$(cat "$tmp/perf.$GATE_PORT.sum")" "$(cat "$tmp/perf.$NGINX_PLAIN_PORT.sum")" "$(cat "$tmp/perf.$NGINX_PORT.sum")"
	fi
	gsum=$(echo "$gsum + $g" | bc -l) psum=$(echo "$psum + $p" | bc -l) ksum=$(echo "$ksum + $k" | bc -l)
	gcsum=$(echo "$gcsum + $gcpu" | bc -l) pcsum=$(echo "$pcsum + $pcpu" | bc -l) kcsum=$(echo "$kcsum + $kcpu" | bc -l)
done
printf 'mean:    ldapgate %6.0f req/s %5.1f us/req | nginx-plain %6.0f req/s %5.1f us/req | nginx-ka %6.0f req/s %5.1f us/req | ratio vs plain %.2f, vs ka %.2f\n' \
	"$(div "$gsum" "$ROUNDS")" "$(div "$gcsum" "$ROUNDS")" "$(div "$psum" "$ROUNDS")" "$(div "$pcsum" "$ROUNDS")" \
	"$(div "$ksum" "$ROUNDS")" "$(div "$kcsum" "$ROUNDS")" "$(div "$gsum" "$psum")" "$(div "$gsum" "$ksum")"
