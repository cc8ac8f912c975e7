#!/bin/sh
# samba.sh start STATE_DIR | stop STATE_DIR
#
# Starts a throw-away Samba Active Directory domain controller for the test
# suite (one per run, shared by every test; see internal/ldaptest/samba.go):
#
#   realm EXAMPLE.COM, base DN DC=example,DC=com, LDAP on 127.0.0.1:389
#   (plain and StartTLS) and 127.0.0.1:636 (LDAPS) with a private CA whose
#   server certificate carries IP SAN 127.0.0.1. Samba 4.17 cannot move off
#   389/636, so this needs root and one server per loopback address
#   (SAMBA_ADDR=127.0.0.2 gives a second one).
#
# `start` prints `export K=V` lines for eval (everything else goes to stderr):
#   eval "$(scripts/test-ldap/samba.sh start /tmp/ldapgate-samba)"
# and writes the same variables (without `export`) to STATE_DIR/server.env.
# A server still running from an earlier start in STATE_DIR is stopped first;
# the domain is then provisioned afresh (about 5 s).
#
# Seeded read-only content (constants mirrored in internal/ldaptest/samba_big.go):
#   OU=big: big0000..big1599 (1600 users, enabled, password $FIXTURE_PASSWORD,
#   mail bigNNNN@example.com) and CN=bigstaff,OU=big holding all 1600 as
#   members: more than AD's MaxPageSize (1000 entries per search or page)
#   and MaxValRange (1500 values per attribute read).
#   Samba 4.17 enforces NEITHER limit: it returns all 1600 entries to a
#   non-paged search, pages of any size, and every member value unless the
#   client asks for a range itself. The Go harness (internal/ldaptest,
#   samba_adlimits.go) therefore puts a small proxy in front of this server
#   that applies AD's limits; the URLs exported here are Samba's own.
#   SAMBA_BENCH_USERS=N (default 0) also seeds OU=bench with bench00000..
#   users, all members of CN=benchstaff,OU=bench, for benchmarks. Not free:
#   ldb's cost per added user grows with the users already there, so 5000
#   more take about 50 s of CPU (1600 take 3.5 s).
#
# Start time: about 11 s on an idle 2-core machine (provision 4.5 s, bulk
# load 3.5 s, LDAP up 1.5 s after samba starts), about 20 s when other jobs
# keep both cores busy.
#
# Why the bulk users are written offline with ldbadd and precomputed NT
# hashes: adding a user with a clear-text password makes Samba derive its
# Kerberos AES keys (PBKDF2, 4096 rounds of Heimdal's SHA-1 — about 20 ms per
# user here), so 1600 users took 36 s. With the bypass-password-hash control
# (DSDB_CONTROL_BYPASS_PASSWORD_HASH_OID) ldbadd stores the given NT hash as
# unicodePwd as is: 1600 users take about 3.5 s. LDAP simple binds check the
# NT hash only, so these users log in normally; they just have no Kerberos
# keys, which nothing here uses. pwdLastSet is written explicitly because the
# bypass skips it, and 0 would mean "must change password" (bind fails with
# data 773).
#
# Password policy is relaxed (no complexity, no minimum length/age, no
# history, no expiry) so tests may set simple passwords. Account lockout stays
# off (lockoutThreshold 0): tests that type wrong passwords must not lock
# shared accounts (ldaptest.SambaSetLocked gives one user its own lockout
# policy instead). FIXTURE_PASSWORD must stay equal to ldaptest.Password.
#
# `stop` ends the samba process started here (STATE_DIR/samba.pid) and leaves
# every file in place for post-mortems (STATE_DIR/samba.log, dc/log/).
#
# Needs: samba samba-ad-dc samba-ad-provision ldb-tools ldap-utils openssl
# (samba-ad-provision holds the AD schema that `domain provision` reads).
set -eu

ADMIN_PASSWORD=${SAMBA_ADMIN_PASSWORD:-Admin-Pass1}
FIXTURE_PASSWORD=${FIXTURE_PASSWORD:-Fixture-Pass1}
ADDR=${SAMBA_ADDR:-127.0.0.1}
BIG_USERS=1600
BENCH_USERS=${SAMBA_BENCH_USERS:-0}
# A safety net: a server forgotten by a crashed run ends by itself.
MAX_RUNTIME=${SAMBA_MAX_RUNTIME:-14400}
BASE=DC=example,DC=com
ADMIN_DN=CN=Administrator,CN=Users,$BASE
# DSDB_CONTROL_BYPASS_PASSWORD_HASH_OID (samba's dsdb.h); ldb's control
# string syntax is local_oid:OID:CRITICAL.
BYPASS_CONTROL=local_oid:1.3.6.1.4.1.7165.4.3.12:0

log() { echo "samba.sh: $*" >&2; }
die() {
	log "$*"
	exit 1
}

usage() {
	echo "usage: $0 start|stop STATE_DIR" >&2
	exit 2
}

[ $# -eq 2 ] || usage
CMD=$1
STATE=$2

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

stop_server() {
	pidfile=$STATE/samba.pid
	[ -s "$pidfile" ] || return 0
	pid=$(cat "$pidfile")
	if alive "$pid"; then
		log "stopping samba (pid $pid)"
		kill "$pid" 2>/dev/null || true
		i=0
		while alive "$pid" && [ $i -lt 50 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		if alive "$pid"; then
			log "samba (pid $pid) ignored SIGTERM; killing it"
			kill -9 "$pid" 2>/dev/null || true
		fi
	fi
	rm -f "$pidfile"
}

case $CMD in
stop)
	[ -d "$STATE" ] || exit 0
	STATE=$(cd "$STATE" && pwd)
	stop_server
	exit 0
	;;
start) ;;
*) usage ;;
esac

for tool in samba samba-tool ldbadd ldbmodify ldapsearch openssl iconv awk; do
	command -v "$tool" >/dev/null 2>&1 ||
		die "$tool not found (apt-get install -y samba samba-ad-dc samba-ad-provision winbind krb5-user ldb-tools ldap-utils openssl)"
done
[ -d /usr/share/samba/setup/ad-schema ] ||
	die "AD schema missing (apt-get install -y samba-ad-provision)"
[ "$(id -u)" -eq 0 ] || die "Samba's LDAP ports 389/636 need root"

mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
stop_server

# Another server on the fixed port (a Samba from another STATE_DIR, a stray
# slapd) would answer our readiness probe and the tests would use it.
# ldapsearch exits 255 only when it cannot reach a server.
rc=0
ldapsearch -x -H "ldap://$ADDR:389" -o nettimeout=2 -s base -b '' >/dev/null 2>&1 || rc=$?
[ "$rc" -eq 255 ] || die "something already answers LDAP on $ADDR:389 (another samba.sh STATE_DIR? SAMBA_ADDR=127.0.0.2 gives a second address)"

T0=$(date +%s)
DC=$STATE/dc
TLS=$STATE/tls
rm -rf "$DC" "$STATE/seed"
mkdir -p "$DC/run" "$DC/log" "$DC/sock" "$DC/ntp" "$TLS" "$STATE/seed"

# --- provision -------------------------------------------------------------
# --host-name: the machine's own hostname may be longer than NetBIOS's 15
# characters (container ids), which provision refuses.
log "provisioning EXAMPLE.COM in $DC"
if ! samba-tool domain provision --use-rfc2307 --realm=EXAMPLE.COM --domain=EXAMPLE \
	--server-role=dc --dns-backend=NONE --host-name=dc1 \
	--adminpass="$ADMIN_PASSWORD" --targetdir="$DC" \
	--option="interfaces = $ADDR" --option="bind interfaces only = yes" \
	--option="server services = ldap, kdc" \
	--option="pid directory = $DC/run" \
	--option="log file = $DC/log/log.%m" \
	--option="winbindd socket directory = $DC/sock" \
	--option="ntp signd socket directory = $DC/ntp" \
	>"$STATE/provision.log" 2>&1; then
	tail -20 "$STATE/provision.log" >&2
	die "provision failed (full log: $STATE/provision.log)"
fi

# --- certificates ----------------------------------------------------------
openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
	-keyout "$TLS/ca.key" -out "$TLS/ca.pem" -days 3650 \
	-subj "/CN=ldapgate samba test CA" \
	-addext "basicConstraints=critical,CA:TRUE" \
	-addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
	-keyout "$TLS/server.key" -out "$TLS/server.csr" -subj "/CN=dc1.example.com" 2>/dev/null
printf '%s\n' \
	"basicConstraints=CA:FALSE" \
	"keyUsage=critical,digitalSignature,keyEncipherment" \
	"extendedKeyUsage=serverAuth" \
	"subjectAltName=IP:$ADDR,DNS:localhost,DNS:dc1.example.com" >"$TLS/server.ext"
openssl x509 -req -in "$TLS/server.csr" -CA "$TLS/ca.pem" -CAkey "$TLS/ca.key" \
	-CAcreateserial -out "$TLS/server.pem" -days 3650 -extfile "$TLS/server.ext" 2>/dev/null
# Samba refuses a key file that others can read.
chmod 0600 "$TLS/server.key" "$TLS/ca.key"

# provision drops `ldap server require strong auth` given as --option; without
# it simple binds over plain ldap:// fail with "Strong(er) authentication
# required", and ldapgate must be testable over ldap:// + StartTLS too.
CONF=$DC/etc/smb.conf
awk -v tls="$TLS" '
	{ print }
	/^\[global\]/ {
		print "\tldap server require strong auth = no"
		print "\ttls enabled = yes"
		print "\ttls keyfile = " tls "/server.key"
		print "\ttls certfile = " tls "/server.pem"
		print "\ttls cafile = " tls "/ca.pem"
	}' "$CONF" >"$CONF.new"
mv "$CONF.new" "$CONF"

# --- seed offline ------------------------------------------------------------
SAM=$DC/private/sam.ldb
NTHASH=$(printf '%s' "$FIXTURE_PASSWORD" | iconv -f UTF-8 -t UTF-16LE |
	openssl dgst -md4 -provider legacy -provider default -binary | base64 -w0)
[ -n "$NTHASH" ] || die "could not compute the NT hash (openssl legacy provider missing?)"
# pwdLastSet is a FILETIME: 100 ns ticks since 1601-01-01.
PWDLASTSET=$((($(date +%s) + 11644473600) * 10000000))

# users_ldif OU PREFIX DIGITS COUNT GROUP
users_ldif() {
	awk -v ou="$1" -v p="$2" -v digits="$3" -v n="$4" -v grp="$5" \
		-v base="$BASE" -v nt="$NTHASH" -v pls="$PWDLASTSET" 'BEGIN {
		printf "dn: OU=%s,%s\nobjectClass: organizationalUnit\n\n", ou, base
		fmt = "%s%0" digits "d"
		for (i = 0; i < n; i++) {
			u = sprintf(fmt, p, i)
			printf "dn: CN=%s,OU=%s,%s\nobjectClass: user\nsAMAccountName: %s\n", u, ou, base, u
			printf "userPrincipalName: %s@example.com\nmail: %s@example.com\n", u, u
			printf "givenName: %s\nsn: User\ndisplayName: %s User\n", u, u
			printf "userAccountControl: 512\nunicodePwd:: %s\npwdLastSet: %s\n\n", nt, pls
		}
		# groupType -2147483646: global security group.
		printf "dn: CN=%s,OU=%s,%s\nobjectClass: group\nsAMAccountName: %s\n", grp, ou, base, grp
		printf "groupType: -2147483646\n"
		for (i = 0; i < n; i++) printf "member: CN=" fmt ",OU=%s,%s\n", p, i, ou, base
		print ""
	}'
}

users_ldif big big 4 "$BIG_USERS" bigstaff >"$STATE/seed/big.ldif"
if [ "$BENCH_USERS" -gt 0 ]; then
	users_ldif bench bench 5 "$BENCH_USERS" benchstaff >>"$STATE/seed/big.ldif"
fi
log "seeding $BIG_USERS big users (+$BENCH_USERS bench users)"
ldbadd --controls="$BYPASS_CONTROL" -H "$SAM" "$STATE/seed/big.ldif" >"$STATE/seed/ldbadd.log" 2>&1 ||
	{
		tail -5 "$STATE/seed/ldbadd.log" >&2
		die "bulk load failed"
	}

# What `samba-tool domain passwordsettings set --complexity=off
# --history-length=0 --min-pwd-length=0 --min-pwd-age=0 --max-pwd-age=0`
# writes, in one ldbmodify instead of a Python start-up.
cat >"$STATE/seed/pwpolicy.ldif" <<EOF
dn: $BASE
changetype: modify
replace: pwdProperties
pwdProperties: 0
-
replace: pwdHistoryLength
pwdHistoryLength: 0
-
replace: minPwdLength
minPwdLength: 0
-
replace: minPwdAge
minPwdAge: 0
-
replace: maxPwdAge
maxPwdAge: -9223372036854775808
EOF
ldbmodify -H "$SAM" "$STATE/seed/pwpolicy.ldif" >>"$STATE/seed/ldbadd.log" 2>&1 ||
	die "password policy change failed (see $STATE/seed/ldbadd.log)"

# --- start -------------------------------------------------------------------
# -F, not -i: an interactive samba exits when its stdin closes, and our stdin
# is whatever the caller had. stdout/stderr go to a file so that a caller
# capturing our output with $(...) does not wait for samba to exit.
log "starting samba on $ADDR:389/636"
samba -s "$CONF" -F -M single --debug-stdout --maximum-runtime="$MAX_RUNTIME" \
	</dev/null >"$STATE/samba.log" 2>&1 &
echo $! >"$STATE/samba.pid"
PID=$!

i=0
until ldapsearch -x -H "ldap://$ADDR:389" -D "$ADMIN_DN" -w "$ADMIN_PASSWORD" \
	-b "$BASE" -s base dn >/dev/null 2>&1; do
	alive "$PID" || {
		tail -20 "$STATE/samba.log" >&2
		die "samba exited (log: $STATE/samba.log)"
	}
	i=$((i + 1))
	[ $i -lt 300 ] || {
		stop_server
		die "samba did not answer LDAP within 60 s (log: $STATE/samba.log)"
	}
	sleep 0.2
done

# TLS_CERT/TLS_KEY let the Go harness's AD-limits proxy serve LDAPS and
# StartTLS with the same certificate, so one CA file fits both.
cat >"$STATE/server.env" <<EOF
LDAPGATE_TEST_SAMBA_URL=ldap://$ADDR:389
LDAPGATE_TEST_SAMBA_LDAPS_URL=ldaps://$ADDR:636
LDAPGATE_TEST_SAMBA_CA=$TLS/ca.pem
LDAPGATE_TEST_SAMBA_TLS_CERT=$TLS/server.pem
LDAPGATE_TEST_SAMBA_TLS_KEY=$TLS/server.key
LDAPGATE_TEST_SAMBA_BASE=$BASE
LDAPGATE_TEST_SAMBA_ADMIN_DN=$ADMIN_DN
LDAPGATE_TEST_SAMBA_ADMIN_PASSWORD=$ADMIN_PASSWORD
EOF
log "samba up (pid $PID) in $(($(date +%s) - T0)) s"
# Values hold no quotes or spaces except what the admin password may have;
# quote each one for eval.
while IFS='=' read -r k v; do
	printf "export %s='%s'\n" "$k" "$v"
done <"$STATE/server.env"
