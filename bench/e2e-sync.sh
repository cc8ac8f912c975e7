#!/usr/bin/env bash
# End-to-end sync benchmark (issue 14): the built binary as an operator runs
# it. Builds ldapgate, loads USERS users in NGROUPS groups, all nested under
# one mapped group (cn=bulkall), into a fresh slapd (slapadd, via
# scripts/test-ldap/slapd.sh), starts `ldapgate serve` with that directory
# in its config file, and through the admin API (bearer token):
#
#   1. a first sync (POST /auth/v4/ldap/{id}/sync) into an empty store,
#      timed by curl, against a paged ldapsearch of the same entries (same
#      attributes and page size) run just before and just after it;
#   2. an unchanged re-sync, against the same ldapsearch;
#   3. GET /auth/v4/user?limit=USERS (curl, body to a file), and filtered
#      and paged listings.
#
# Each sync's CPU time (ldapgate's and slapd's, from /proc) is set against
# the CPU time of slapd and ldapsearch for the baseline: on a shared machine
# that ratio moves much less than the wall-time one.
#
# Peak RSS is the ldapgate process's VmHWM from /proc, reset (clear_refs)
# before each step; "growth" is VmHWM after the step minus VmRSS before it.
# The server's own "sync finished" log line gives the phases.
#
#   bench/e2e-sync.sh                       # 100,000 users, no GOMEMLIMIT
#   GOMEMLIMIT=256MiB bench/e2e-sync.sh     # as the Dockerfile runs it
#   USERS=10000 bench/e2e-sync.sh           # quick check
#   ROUNDS=3 VARIANTS="plain docker" bench/e2e-sync.sh
#                                           # alternating, one slapd, fresh stores
#   PPROF=1 bench/e2e-sync.sh               # also a CPU profile of each first sync
#   PPROF=trace bench/e2e-sync.sh           # an execution trace instead (go tool trace)
#
# VARIANTS (default "plain"), each run in every round, in order:
#   plain       the binary as built by the Dockerfile, GOMEMLIMIT/GOGC from
#               the environment (none by default)
#   docker      the same with the Dockerfile's GOMEMLIMIT and GOGC (read from it)
#   gomemlimit=X  the same with GOMEMLIMIT=X (e.g. gomemlimit=192MiB)
#   gogc=X      the Dockerfile's settings with GOGC=X (a candidate for them)
#   untrusted   a build whose apply writes new users with PutUser's index
#               lookups instead of trusted creates (cache/badgerstore/names.go)
#   postgres    the plain binary on store.backend: postgres (SPEC §12), a
#               fresh database per round on the cluster of PG_DSN (default
#               $LDAPGATE_TEST_PG_DSN; scripts/test-pg.sh start DIR makes one)
#
# GOMEMLIMIT and GOGC, when set, are passed to ldapgate only. Needs: go,
# slapd, slapadd and ldapsearch (slapd, ldap-utils), curl, awk, bc, python3.
# Everything listens on 127.0.0.1; every process started is killed on exit.
# Bounded: each curl has a timeout (TIMEOUT seconds, default 600).
set -euo pipefail

USERS=${USERS:-100000}
GROUPS_N=${NGROUPS:-100}
ROUNDS=${ROUNDS:-1}
VARIANTS=${VARIANTS:-plain}
PAGE=${PAGE:-500}
TIMEOUT=${TIMEOUT:-600}
PPROF=${PPROF:-}
GATE_GOMEMLIMIT=${GOMEMLIMIT:-}
GATE_GOGC=${GOGC:-}
unset GOMEMLIMIT GOGC # not for go build, slapd or the tools

root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/lib.sh"

for cmd in go slapadd ldapsearch curl awk bc; do
	command -v "$cmd" >/dev/null || [ -x "/usr/sbin/$cmd" ] || { echo "e2e-sync.sh: $cmd not found" >&2; exit 1; }
done


echo "building ldapgate..." >&2
for v in $VARIANTS; do
	case $v in
	plain | docker | gomemlimit=* | gogc=* | postgres) ;;
	untrusted) ;;
	*) echo "e2e-sync.sh: unknown variant $v" >&2; exit 2 ;;
	esac
done
(cd "$root" && CGO_ENABLED=0 go build -trimpath -o "$tmp/ldapgate.plain" .)
# The measurement build: syncer/apply.go's bench switch.
case " $VARIANTS " in *" untrusted "*)
	(cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags "-X github.com/ldapgate/ldapgate/syncer.benchUntrusted=1" -o "$tmp/ldapgate.untrusted" .)
	;;
esac

PG_DSN=${PG_DSN:-${LDAPGATE_TEST_PG_DSN:-}}
case " $VARIANTS " in *" postgres "*)
	[ -n "$PG_DSN" ] || { echo "e2e-sync.sh: variant postgres needs PG_DSN (scripts/test-pg.sh start DIR)" >&2; exit 2; }
	command -v psql >/dev/null || { echo "e2e-sync.sh: psql not found" >&2; exit 1; }
	;;
esac

# --- slapd with the bulk directory ----------------------------------------
base=dc=example,dc=com
echo "writing $USERS users in $GROUPS_N groups..." >&2
awk -v users="$USERS" -v groups="$GROUPS_N" -v base="$base" 'BEGIN {
	udn = "ou=bulk," base; gdn = "ou=bulkgroups," base
	printf "dn: %s\nobjectClass: organizationalUnit\nou: bulk\n\n", udn
	printf "dn: %s\nobjectClass: organizationalUnit\nou: bulkgroups\n\n", gdn
	for (i = 0; i < users; i++) {
		uid = sprintf("bulk%06d", i)
		printf "dn: uid=%s,%s\nobjectClass: inetOrgPerson\nuid: %s\ncn: Bulk User %d\nsn: User%d\nmail: %s@example.com\nuserPassword: bench-password\nmemberOf: cn=bulkgrp%03d,%s\n\n", uid, udn, uid, i, i, uid, i % groups, gdn
	}
	for (g = 0; g < groups; g++) {
		printf "dn: cn=bulkgrp%03d,%s\nobjectClass: groupOfNames\ncn: bulkgrp%03d\nmemberOf: cn=bulkall,%s\n", g, gdn, g, gdn
		if (g >= users) printf "member:\n"
		for (i = g; i < users; i += groups) printf "member: uid=bulk%06d,%s\n", i, udn
		printf "\n"
	}
	printf "dn: cn=bulkall,%s\nobjectClass: groupOfNames\ncn: bulkall\n", gdn
	for (g = 0; g < groups; g++) printf "member: cn=bulkgrp%03d,%s\n", g, gdn
	printf "\n"
}' >"$tmp/bulk.ldif"

ldap_port=$(free_port) ldaps_port=$(free_port)
echo "starting slapd (slapadd of the users takes a while)..." >&2
slapd_pid=$("$root/scripts/test-ldap/slapd.sh" "$tmp/slapd" "$ldap_port" "$ldaps_port" "$tmp/bulk.ldif")
pids+=("$slapd_pid")
ldap_url="ldap://127.0.0.1:$ldap_port/"
admin_dn="cn=admin,$base" admin_pw=${SLAPD_ADMIN_PASSWORD:-admin-secret}

# The same reads as the sync: users, then groups, paged, same attributes.
ticks_s() { # CPU seconds (user+system) of process $1 so far
	local f
	read -ra f < <(sed 's/.*) //' "/proc/$1/stat")
	echo "scale=2; (${f[11]} + ${f[12]}) / $(getconf CLK_TCK)" | bc
}

# ldapsearch_time prints "wall-seconds cpu-seconds": the CPU is slapd's
# and ldapsearch's, to set against ldapgate's and slapd's during a sync
# (CPU moves much less than wall time when the machine is shared).
ldapsearch_time() {
	local t0 t1 c0 c1 kids
	t0=$(date +%s.%N) c0=$(ticks_s "$slapd_pid")
	timeout "$TIMEOUT" ldapsearch -x -LLL -H "$ldap_url" -D "$admin_dn" -w "$admin_pw" -E "pr=$PAGE/noprompt" \
		-b "ou=bulk,$base" '(objectClass=inetOrgPerson)' uid entryUUID mail cn memberOf pwdAccountLockedTime >/dev/null
	timeout "$TIMEOUT" ldapsearch -x -LLL -H "$ldap_url" -D "$admin_dn" -w "$admin_pw" -E "pr=$PAGE/noprompt" \
		-b "ou=bulkgroups,$base" '(objectClass=groupOfNames)' cn member uniqueMember memberUid memberOf objectSid >/dev/null
	t1=$(date +%s.%N) c1=$(ticks_s "$slapd_pid")
	# The children's CPU of this subshell: both ldapsearch runs (and the
	# few date/sed/bc calls, milliseconds).
	local tf=$tmp/times.$BASHPID
	times >"$tf" # not in a $(...): that subshell has no children
	kids=$(tail -n 1 "$tf" | awk '{ for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); t += a[1] * 60 + a[2] } print t }')
	echo "$(echo "$t1 - $t0" | bc -l) $(echo "$c1 - $c0 + $kids" | bc -l)"
}

# --- ldapgate ---------------------------------------------------------------
token=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$token" >"$tmp/admin_token"
gate_port=$(free_port) metrics_port=$(free_port) up_port=$(free_port)
admin=(-H "Authorization: Bearer $token")
gate_pid=
start_gate() { # $1: data dir, $2: variant
	cat >"$tmp/ldapgate.yaml" <<YAML
listen: "127.0.0.1:$gate_port"
metrics_listen: "127.0.0.1:$metrics_port"
${PPROF:+pprof: true}
upstream: "http://127.0.0.1:$up_port"
data_dir: "$1"
log_level: info
admin_token_file: "$tmp/admin_token"
session: {secure_cookie: false}
$(if [ "$2" = postgres ]; then printf 'store: {backend: postgres, postgres: {dsn_file: "%s"}}' "$tmp/pg_dsn"; fi)
directories:
  - name: bulk
    type: ldap
    urls: ["$ldap_url"]
    base_dn: "$base"
    bind_dn: "$admin_dn"
    bind_password: "$admin_pw"
    users_dn: ou=bulk
    groups_dn: ou=bulkgroups
    user_object_filter: "(objectClass=inetOrgPerson)"
    group_object_filter: "(objectClass=groupOfNames)"
    role_mapping: {user: ["cn=bulkall,ou=bulkgroups,$base"]}
    default_role: ""
    domain: example.com
    page_size: $PAGE
    timeout: 5m
YAML
	local bin=$tmp/ldapgate.plain memlimit=$GATE_GOMEMLIMIT gogc=$GATE_GOGC
	case $2 in
	docker | gogc=*)
		memlimit=$(sed -n 's/^ENV GOMEMLIMIT=\([^ ]*\).*/\1/p' "$root/Dockerfile")
		gogc=$(sed -n 's/^ENV GOGC=\([^ ]*\).*/\1/p' "$root/Dockerfile")
		case $2 in gogc=*) gogc=${2#gogc=} ;; esac
		;;
	gomemlimit=*) memlimit=${2#gomemlimit=} ;;
	untrusted) bin=$tmp/ldapgate.$2 ;;
	esac
	env ${memlimit:+GOMEMLIMIT=$memlimit} ${gogc:+GOGC=$gogc} \
		"$bin" serve -config "$tmp/ldapgate.yaml" >>"$tmp/gate.log" 2>&1 &
	gate_pid=$!
	pids+=("$gate_pid")
	for _ in $(seq 300); do
		if curl -fsS -m 2 -o /dev/null "http://127.0.0.1:$metrics_port/healthz" 2>/dev/null; then return 0; fi
		kill -0 "$gate_pid" 2>/dev/null || break
		sleep 0.1
	done
	echo "e2e-sync.sh: ldapgate did not start:" >&2
	tail -n 20 "$tmp/gate.log" >&2
	exit 1
}
stop_gate() {
	kill "$gate_pid" 2>/dev/null || true
	for _ in $(seq 100); do kill -0 "$gate_pid" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$gate_pid" 2>/dev/null || true
	wait "$gate_pid" 2>/dev/null || true
}

cpu_s() { # CPU seconds of ldapgate and slapd so far
	echo "$(ticks_s "$gate_pid") + $(ticks_s "$slapd_pid")" | bc
}
status_kb() { awk -v f="$1:" '$1 == f {print $2}' "/proc/$gate_pid/status"; }
reset_peak() { echo 5 >"/proc/$gate_pid/clear_refs"; }
# sample_rss tracks ldapgate's largest RssAnon (heap, stacks) and RssFile
# (the binary and the store's memory-mapped files) every 50 ms until
# $tmp/stop exists, then writes them (kB) to $tmp/rss-split: which side a
# peak comes from.
sample_rss() {
	local a f ma=0 mf=0
	while [ ! -e "$tmp/stop" ]; do
		read -r a f < <(awk '$1 == "RssAnon:" {a = $2} $1 == "RssFile:" {f = $2} END {print a + 0, f + 0}' \
			"/proc/$gate_pid/status" 2>/dev/null || echo 0 0)
		((a > ma)) && ma=$a
		((f > mf)) && mf=$f
		sleep 0.05
	done
	echo "$ma $mf" >"$tmp/rss-split"
}

mib() { echo "scale=0; $1 / 1024" | bc; }

api() { # method path [curl args...] -> seconds; body in $tmp/body
	local m=$1 p=$2 out code t
	shift 2
	out=$(curl -sS -m "$TIMEOUT" -X "$m" "${admin[@]}" -o "$tmp/body" -w '%{http_code} %{time_total}' "$@" \
		"http://127.0.0.1:$gate_port$p")
	read -r code t <<<"$out"
	if [ "$code" != 200 ]; then
		echo "e2e-sync.sh: $m $p: HTTP $code: $(head -c 300 "$tmp/body")" >&2
		exit 1
	fi
	echo "$t"
}

phases() { # the phases of the last "sync finished" log line (slog writes durations in ns)
	grep '"sync finished"' "$tmp/gate.log" | tail -n 1 | grep -oE '"(read|plan|apply)":[0-9]+' |
		awk -F'[":]+' '{printf "%s%s %.2f s", sep, $2, $3 / 1e9; sep = ", "}'
}

div() { echo "scale=2; ($1) / ($2)" | bc -l; }

echo "warming slapd..." >&2
ldapsearch_time >/dev/null

printf '%s users in %s groups nested under one mapped group, page size %s, ldapgate %s%s\n' \
	"$USERS" "$GROUPS_N" "$PAGE" "${GATE_GOMEMLIMIT:+GOMEMLIMIT=$GATE_GOMEMLIMIT }" "${GATE_GOGC:+GOGC=$GATE_GOGC}"
printf '%-12s | %-10s | %-10s | %-6s | %-9s | %-10s | %-6s | %s\n' round ldapsearch "first sync" ratio "peak RSS" "re-sync" ratio "phases of the first sync (server log)"
declare -A sum_ratio sum_reratio max_peak sum_cratio sum_recratio
for r in $(seq "$ROUNDS"); do
for v in $VARIANTS; do
	rm -rf "$tmp/data"
	if [ "$v" = postgres ]; then pg_fresh; fi
	start_gate "$tmp/data" "$v"
	id=$(curl -fsS -m 30 "${admin[@]}" "http://127.0.0.1:$gate_port/auth/v4/ldap" |
		sed -n 's/.*"id":\([0-9]*\),"name":"bulk".*/\1/p')
	[ -n "$id" ] || { echo "e2e-sync.sh: directory bulk not found through the API" >&2; exit 1; }

	(ldapsearch_time) >"$tmp/ls" # a subshell: times counts only its children
	read -r s1 sc1 <"$tmp/ls"
	rss0=$(status_kb VmRSS)
	reset_peak
	if [ -n "$PPROF" ]; then
		kind=profile
		[ "$PPROF" = trace ] && kind=trace
		curl -sS -m "$TIMEOUT" -o "$tmp/cpu.$r.pprof" "http://127.0.0.1:$metrics_port/debug/pprof/$kind?seconds=${PPROF_SECONDS:-8}" &
		prof_pid=$!
		sleep 0.2
	fi
	rm -f "$tmp/stop" "$tmp/rss-split"
	sample_rss &
	sampler=$!
	pids+=("$sampler")
	c0=$(cpu_s)
	first=$(api POST "/auth/v4/ldap/$id/sync")
	peak=$(status_kb VmHWM)
	touch "$tmp/stop"
	wait "$sampler" || true
	read -r peak_anon peak_file <"$tmp/rss-split"
	c1=$(cpu_s)
	if [ -n "$PPROF" ]; then
		wait "$prof_pid" || true
		cp "$tmp/cpu.$r.pprof" "${PPROF_OUT:-/tmp}/e2e-sync-$kind.$r.pprof"
		echo "$kind: ${PPROF_OUT:-/tmp}/e2e-sync-$kind.$r.pprof (binary: keep it with PPROF_BIN)" >&2
		[ -n "${PPROF_BIN:-}" ] && cp "$tmp/ldapgate.plain" "$PPROF_BIN"
	fi
	grep -q "\"create\":$USERS" "$tmp/body" || { echo "e2e-sync.sh: first sync did not create $USERS users: $(head -c 400 "$tmp/body")" >&2; exit 1; }
	ph=$(phases)
	(ldapsearch_time) >"$tmp/ls" # a subshell: times counts only its children
	read -r s2 sc2 <"$tmp/ls"
	c2=$(cpu_s)
	resync=$(api POST "/auth/v4/ldap/$id/sync")
	c3=$(cpu_s)
	grep -q '"create"\|"update"' "$tmp/body" && { echo "e2e-sync.sh: the unchanged re-sync wrote users: $(head -c 400 "$tmp/body")" >&2; exit 1; }
	(ldapsearch_time) >"$tmp/ls" # a subshell: times counts only its children
	read -r s3 sc3 <"$tmp/ls"
	ratio=$(div "$first * 2" "$s1 + $s2") reratio=$(div "$resync * 2" "$s2 + $s3")
	printf '%-12s | %8.3f s | %8.3f s | %6.2f | %5s MiB | %8.3f s | %6.2f | %s\n' "$r $v" "$(div "$s1 + $s2" 2)" "$first" \
		"$ratio" "$(mib "$peak")" "$resync" "$reratio" "$ph"
	cratio=$(div "($c1 - $c0) * 2" "$sc1 + $sc2") recratio=$(div "($c3 - $c2) * 2" "$sc2 + $sc3")
	printf '%-12s   CPU (ldapgate + slapd vs ldapsearch + slapd): first sync %.2f s vs %.2f s = %.2f x, re-sync %.2f s = %.2f x\n' \
		"" "$(echo "$c1 - $c0" | bc)" "$(div "$sc1 + $sc2" 2)" "$cratio" "$(echo "$c3 - $c2" | bc)" "$recratio"
	printf '%-12s   first sync RSS, largest samples (50 ms): anon %s MiB, file %s MiB\n' "" "$(mib "$peak_anon")" "$(mib "$peak_file")"
	sum_cratio[$v]=$(echo "${sum_cratio[$v]:-0} + $cratio" | bc -l)
	sum_recratio[$v]=$(echo "${sum_recratio[$v]:-0} + $recratio" | bc -l)
	sum_ratio[$v]=$(echo "${sum_ratio[$v]:-0} + $ratio" | bc -l)
	sum_reratio[$v]=$(echo "${sum_reratio[$v]:-0} + $reratio" | bc -l)
	max_peak[$v]=$(( ${max_peak[$v]:-0} > peak ? ${max_peak[$v]:-0} : peak ))

	if [ "$r" = "$ROUNDS" ] && [ "$v" = "${VARIANTS##* }" ]; then
		# Listings, after the syncs, on the last round's store.
		printf '\n%-44s | %-8s | %-9s | %-10s | %s\n' listing time "RSS growth" "peak RSS" bytes
		for q in "limit=$USERS" "limit=50" "limit=50&offset=$((USERS / 2))" "state=active&limit=50&offset=$((USERS - 100))" \
			"role=user&limit=100" "directory=bulk&limit=50&offset=1000" "state=blocked" \
			"q=bulk0999&limit=50" "q=bulk&limit=50&offset=$((USERS - 100))"; do
			rss0=$(status_kb VmRSS)
			reset_peak
			t=$(api GET "/auth/v4/user?$q")
			peak=$(status_kb VmHWM)
			printf '%-44s | %6.3f s | %5s MiB | %6s MiB | %s\n' "GET /auth/v4/user?$q" "$t" "$(mib "$((peak - rss0))")" \
				"$(mib "$peak")" "$(stat -c %s "$tmp/body")"
		done
	fi
	stop_gate
	if [ "$v" = postgres ]; then pg_drop; fi
done
done

echo
echo "summary over $ROUNDS round(s): means of the same-run ratios to ldapsearch (wall time; CPU), highest peak RSS"
for v in $VARIANTS; do
	printf '%-12s | first sync %.2f x (CPU %.2f x) | re-sync %.2f x (CPU %.2f x) | peak RSS %s MiB\n' "$v" \
		"$(div "${sum_ratio[$v]}" "$ROUNDS")" "$(div "${sum_cratio[$v]}" "$ROUNDS")" \
		"$(div "${sum_reratio[$v]}" "$ROUNDS")" "$(div "${sum_recratio[$v]}" "$ROUNDS")" "$(mib "${max_peak[$v]}")"
done
