#!/usr/bin/env bash
# The one command that runs every test (README, .ci/run):
#   - installs the Debian packages the tests need when missing (as root),
#   - starts the shared real directories (Samba AD DC, 389 Directory Server;
#     OpenLDAP slapd instances are started per test by internal/ldaptest),
#   - checks gofmt and go vet, runs `go test -race ./...`, then each fuzz
#     target briefly, and stops the servers.
# With LDAPGATE_REQUIRE_REAL_LDAP=1 (CI) a server that fails to start fails
# the run instead of letting its tests skip.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"
: "${FUZZTIME:=5s}"

log() { printf '== %s\n' "$*" >&2; }

# binary → Debian package
PACKAGES=(
	/usr/sbin/slapd:slapd
	/usr/bin/ldapsearch:ldap-utils
	/usr/sbin/samba:samba
	/usr/bin/samba-tool:samba-ad-dc
	/usr/share/samba/setup/provision.ldif:samba-ad-provision
	/usr/bin/ldbadd:ldb-tools
	/usr/sbin/ns-slapd:389-ds-base
	/usr/bin/chromium:chromium
	/usr/sbin/nginx:nginx-light
	/usr/bin/caddy:caddy
	/usr/bin/wrk:wrk
	/usr/bin/openssl:openssl
	/usr/lib/postgresql:postgresql
)
missing=()
for pair in "${PACKAGES[@]}"; do
	[ -e "${pair%%:*}" ] || missing+=("${pair##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		log "installing ${missing[*]}"
		# Debian would start slapd/samba/nginx as system services on install;
		# they must not (Samba AD needs port 389, tests start their own).
		made_policy=
		if [ ! -e /usr/sbin/policy-rc.d ]; then
			printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
			chmod +x /usr/sbin/policy-rc.d
			made_policy=1
		fi
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -q >/dev/null
		apt-get install -y -q --no-install-recommends \
			krb5-user winbind python3-ldb samba-ad-provision "${missing[@]}" >/dev/null
		[ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
	else
		log "missing packages (not root, not installing): ${missing[*]}"
	fi
fi

STATE=$(mktemp -d /tmp/ldapgate-test.XXXXXX)
# 389-ds runs as dirsrv and must be able to enter its state directory.
chmod 755 "$STATE"
cleanup() {
	scripts/test-ldap/samba.sh stop "$STATE/samba" >/dev/null 2>&1 || true
	scripts/test-ldap/389ds.sh stop "$STATE/389ds" >/dev/null 2>&1 || true
	scripts/test-pg.sh stop "$STATE/pg" >/dev/null 2>&1 || true
	rm -rf "$STATE"
}
trap cleanup EXIT

# Start the shared directories side by side: provisioning is most of the wait.
start_server() { # name script
	if "$ROOT/scripts/$2" start "$STATE/$1" >"$STATE/$1.env" 2>"$STATE/$1.log"; then
		log "$1 started"
	else
		log "$1 failed to start:"; tail -n 40 "$STATE/$1.log" >&2
		return 1
	fi
}
pids=()
# PostgreSQL (the shared store of several replicas, SPEC §12) starts with them.
for s in samba:test-ldap/samba.sh 389ds:test-ldap/389ds.sh pg:test-pg.sh; do
	if [ -x "scripts/${s#*:}" ]; then
		start_server "${s%%:*}" "${s#*:}" & pids+=($!)
	fi
done
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=1; done
if [ "$failed" = 1 ] && [ "${LDAPGATE_REQUIRE_REAL_LDAP:-}" = 1 ]; then
	log "a real directory or PostgreSQL failed to start and LDAPGATE_REQUIRE_REAL_LDAP=1"; exit 1
fi
for f in "$STATE"/*.env; do [ -s "$f" ] && . "$f"; done

log "gofmt and go vet"
unformatted=$(gofmt -l . | grep -v '^vendor/' || true)
if [ -n "$unformatted" ]; then log "gofmt would change:"; echo "$unformatted"; exit 1; fi
go vet ./...

log "go test -race ./..."
go test -race -count=1 -timeout 25m ./...

# The sync rules, the directory conformance table, logins, sessions and the
# pages once more on the PostgreSQL store (SPEC §12: the same rules and
# answers on both stores).
if [ -n "${LDAPGATE_TEST_PG_DSN:-}" ]; then
	log "syncer, conformance, auth and web on the PostgreSQL store"
	LDAPGATE_TEST_STORE=postgres go test -race -count=1 ./syncer ./conformance ./auth ./web
fi

# The timing-parity tests compare argon2id-bound logins; under -race
# argon2id is ~10x slower and they skip themselves there, so they run once
# more without it (SPEC §5: no name can be probed by timing).
log "timing tests without -race"
go test -count=1 -run 'UnknownNameCost' ./auth ./directory

# Each fuzz target runs briefly on top of its committed seed corpus (which
# `go test` above already replayed).
log "fuzzing each target for $FUZZTIME"
# A failure prints the fuzzer's output. One that found an input fails at
# once (the input is written under testdata/fuzz); one without (the fuzz
# engine itself stopping, seen once under load) is retried once.
fuzzout=$(mktemp)
grep -rl --include='*_test.go' '^func Fuzz' . | while read -r file; do
	dir=$(dirname "$file")
	for fn in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$file" | cut -d' ' -f2); do
		for try in 1 2; do
			if go test -run '^$' -fuzz "^${fn}\$" -fuzztime "$FUZZTIME" "$dir" >"$fuzzout" 2>&1; then
				log "fuzz $dir $fn ok"
				break
			fi
			cat "$fuzzout" >&2
			if [ "$try" = 2 ] || grep -q 'Failing input written' "$fuzzout"; then
				log "fuzz $dir $fn FAILED"
				exit 1
			fi
			log "fuzz $dir $fn: the fuzzer stopped without a failing input; once more"
		done
	done
done
rm -f "$fuzzout"
log "all tests passed"
