#!/usr/bin/env bash
# 389ds.sh start|stop STATE_DIR — a private 389 Directory Server on loopback,
# shaped like FreeIPA, for internal/ldaptest (Shared389).
#
#   eval "$(scripts/test-ldap/389ds.sh start /tmp/ldapgate-389)"
#   go test ./internal/ldaptest/ -run 389
#   scripts/test-ldap/389ds.sh stop /tmp/ldapgate-389
#
# start prints only `export K=V` lines on stdout (everything else goes to
# stderr) and writes the same to STATE_DIR/server.env. It installs nothing: the
# caller (scripts/test.sh) apt-installs 389-ds-base and ldap-utils.
#
# Environment (all optional):
#   LDAPGATE_TEST_389_PORT        plain LDAP port   (default 3389)
#   LDAPGATE_TEST_389_LDAPS_PORT  LDAPS port        (default 3636)
#   LDAPGATE_TEST_389_ADMIN_PASSWORD  Directory Manager password
#   LDAPGATE_TEST_389_FRESH=1     recreate the instance even if STATE_DIR has one
#
# Why it looks like this:
#   - dscreate only knows system paths, so a copy of defaults.inf re-roots
#     /etc, /var and /run under STATE_DIR/prefix and PREFIX points lib389 at it:
#     no file outside STATE_DIR is touched and two state dirs never collide.
#   - dscreate starts the server once during setup on the configured ports and
#     on every address; running it in a private network namespace (unshare -n,
#     loopback only) keeps that run invisible to and unaffected by the host.
#   - the real start binds 127.0.0.1 only (nsslapd-listenhost), per the team
#     rule that test servers stay on loopback.
#   - dscreate's self-signed server certificate names the host only (DNS SAN);
#     Go verifies ldaps://127.0.0.1 against IP SANs, so the script issues a new
#     Server-Cert with an IP SAN from dscreate's own CA and exports that CA.
set -euo pipefail

INSTANCE=ldapgate
SUFFIX='dc=example,dc=com'
ADMIN_DN='cn=Directory Manager'
ADMIN_PW="${LDAPGATE_TEST_389_ADMIN_PASSWORD:-Directory-Pass1}"
PORT="${LDAPGATE_TEST_389_PORT:-3389}"
LDAPS_PORT="${LDAPGATE_TEST_389_LDAPS_PORT:-3636}"
HOST=127.0.0.1

log() { echo "389ds.sh: $*" >&2; }
# elapsed T0 prints the time since T0 (date +%s%N) as seconds with 2 decimals.
elapsed() {
	local ms=$((($(date +%s%N) - $1) / 1000000))
	printf '%d.%02d s' $((ms / 1000)) $((ms % 1000 / 10))
}
die() { log "ERROR: $*"; exit 1; }

usage() { die "usage: $0 start|stop STATE_DIR"; }

[ $# -eq 2 ] || usage
CMD=$1
STATE=$2
[ -n "$STATE" ] || usage
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
PREFIX_DIR=$STATE/prefix
CONF_DIR=$PREFIX_DIR/etc/dirsrv/slapd-$INSTANCE
RUN_DIR=$PREFIX_DIR/run/dirsrv
PID_FILE=$RUN_DIR/slapd-$INSTANCE.pid
LOG_DIR=$PREFIX_DIR/var/log/dirsrv/slapd-$INSTANCE
STAMP=$STATE/instance.stamp

need() {
	local b
	for b in "$@"; do
		command -v "$b" >/dev/null 2>&1 ||
			die "'$b' not found: install 389-ds-base and ldap-utils (apt-get install -y 389-ds-base ldap-utils)"
	done
}

# show_errors prints the serious lines of the server's error log (all of it
# is in $LOG_DIR/errors).
show_errors() {
	local lines
	lines=$(grep -E ' - (ERR|CRIT|EMERG) - ' "$LOG_DIR/errors" 2>/dev/null | tail -n 10) || true
	[ -n "$lines" ] || lines=$(tail -n 10 "$LOG_DIR/errors" 2>/dev/null) || true
	echo "$lines" >&2
	log "full log: $LOG_DIR/errors"
}

# server_pid prints the pid of a live ns-slapd of this state dir, if any.
server_pid() {
	local pid
	[ -s "$PID_FILE" ] || return 1
	pid=$(cat "$PID_FILE")
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
	# A recycled pid must not make us kill a stranger.
	grep -q ns-slapd "/proc/$pid/comm" 2>/dev/null || return 1
	echo "$pid"
}

stop_server() {
	local pid i
	pid=$(server_pid) || { rm -f "$PID_FILE"; return 0; }
	log "stopping ns-slapd (pid $pid)"
	kill -TERM "$pid"
	for i in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || { rm -f "$PID_FILE"; return 0; }
		sleep 0.1
	done
	log "ns-slapd $pid ignored SIGTERM for 10 s; killing it"
	kill -KILL "$pid" 2>/dev/null || true
	rm -f "$PID_FILE"
}

# create_instance builds a new instance under $PREFIX_DIR with dscreate.
create_instance() {
	local t0 inf
	t0=$(date +%s%N)
	rm -rf "$PREFIX_DIR" "$STAMP"
	mkdir -p "$PREFIX_DIR/share/dirsrv/inf" "$PREFIX_DIR/etc" "$PREFIX_DIR/var" "$PREFIX_DIR/run"
	# Re-root every writable path; binaries, plugins and the system schema stay
	# where the package put them.
	sed -E \
		-e "s#^with_systemd = .*#with_systemd = 0#" \
		-e "s#= /etc/#= $PREFIX_DIR/etc/#" \
		-e "s#= /etc\$#= $PREFIX_DIR/etc#" \
		-e "s#= /var/#= $PREFIX_DIR/var/#" \
		-e "s#= /var\$#= $PREFIX_DIR/var#" \
		-e "s#= /run/#= $PREFIX_DIR/run/#" \
		-e "s#= /dev/shm/#= $PREFIX_DIR/var/shm/#" \
		-e "s#^inst_dir = .*#inst_dir = $PREFIX_DIR/lib/dirsrv/slapd-{instance_name}#" \
		/usr/share/dirsrv/inf/defaults.inf >"$PREFIX_DIR/share/dirsrv/inf/defaults.inf"
	# dscreate makes missing parents as root with mode 770, which ns-slapd
	# (running as dirsrv) then cannot enter: create them all beforehand.
	mkdir -p "$PREFIX_DIR"/var/{shm,log/dirsrv,lib/dirsrv} "$PREFIX_DIR"/run/{dirsrv,lock/dirsrv} \
		"$PREFIX_DIR/lib/dirsrv" "$PREFIX_DIR/etc/dirsrv"
	# dscreate copies its templates (schema/99user.ldif, collations, certmap)
	# from sysconf_dir, and keeps its self-signed CA (ssca/) there.
	[ -d /etc/dirsrv/schema ] && [ -d /etc/dirsrv/config ] || die "/etc/dirsrv/{schema,config} missing: reinstall 389-ds-base"
	cp -a /etc/dirsrv/schema /etc/dirsrv/config "$PREFIX_DIR/etc/dirsrv/"
	# ns-slapd drops to dirsrv; it must reach and own everything below.
	chown -R dirsrv:dirsrv "$PREFIX_DIR"
	chmod 755 "$STATE"
	if command -v runuser >/dev/null && ! runuser -u dirsrv -- test -w "$PREFIX_DIR/var/log/dirsrv"; then
		die "user dirsrv cannot reach $PREFIX_DIR: pick a STATE_DIR whose parents are world-searchable (e.g. /tmp/ldapgate-389)"
	fi

	inf=$STATE/instance.inf
	cat >"$inf" <<EOF
[general]
config_version = 2
full_machine_name = localhost
start = False
strict_host_checking = False
selinux = False
systemd = False

[slapd]
instance_name = $INSTANCE
port = $PORT
secure_port = $LDAPS_PORT
root_dn = $ADMIN_DN
root_password = $ADMIN_PW
self_sign_cert = True
self_sign_cert_valid_months = 120

[backend-userroot]
suffix = $SUFFIX
create_suffix_entry = True
sample_entries = no
EOF
	chmod 600 "$inf"
	log "creating instance in $PREFIX_DIR (dscreate, ~11 s)"
	if ! PREFIX=$PREFIX_DIR unshare -n sh -c 'ip link set lo up && exec dscreate from-file "$1"' sh "$inf" >"$STATE/dscreate.log" 2>&1; then
		cat "$STATE/dscreate.log" >&2
		die "dscreate failed (log above, also in $STATE/dscreate.log)"
	fi
	# dscreate stops its setup server; make sure, since it ran in a namespace
	# nobody can reach.
	stop_server

	configure_offline
	echo "$PORT $LDAPS_PORT" >"$STAMP"
	log "instance created in $(elapsed "$t0")"
}

# configure_offline edits dse.ldif, the schema and the cert db while the
# server is down.
configure_offline() {
	local dse=$CONF_DIR/dse.ldif tmp
	tmp=$(mktemp)
	# Paragraph mode: one LDIF entry per record. Lines of cn=config are never
	# folded for the attributes touched here.
	awk -v host="$HOST" 'BEGIN { RS = ""; ORS = "\n\n" }
		/^dn: cn=config\n/ {
			gsub(/\nnsslapd-listenhost: [^\n]*/, "")
			gsub(/\nnsslapd-securelistenhost: [^\n]*/, "")
			$0 = $0 "\nnsslapd-listenhost: " host "\nnsslapd-securelistenhost: " host
		}
		/^dn: cn=MemberOf Plugin,cn=plugins,cn=config\n/ {
			# FreeIPA reads group membership from memberOf; the plugin keeps it,
			# nested groups included. Its defaults (memberofgroupattr: member,
			# memberofattr: memberOf, memberofautoaddoc: nsMemberOf) fit.
			gsub(/\nnsslapd-pluginEnabled: [^\n]*/, "\nnsslapd-pluginEnabled: on")
		}
		{ print }' "$dse" >"$tmp"
	grep -q "^nsslapd-listenhost: $HOST\$" "$tmp" || die "could not set nsslapd-listenhost in $dse"
	awk 'BEGIN { RS = "" } /^dn: cn=MemberOf Plugin,cn=plugins,cn=config\n/ && /\nnsslapd-pluginEnabled: on/ { ok = 1 } END { exit !ok }' "$tmp" ||
		die "could not enable the MemberOf plugin in $dse"
	cat "$tmp" >"$dse"
	rm -f "$tmp"

	# FreeIPA's own definitions (OIDs from its 60basev2.ldif), so fixture users
	# carry ipaUniqueID the way a real FreeIPA user does; and the two expiry
	# attributes of FreeIPA's Kerberos schema (OIDs from MIT's
	# kerberos.schema) that SPEC §13 reads, absent from a plain 389-ds
	# (ldaptest.ds389KrbSchema adds them to an instance started before).
	cat >"$CONF_DIR/schema/98ldapgate-ipa.ldif" <<'EOF'
dn: cn=schema
attributeTypes: ( 2.16.840.1.113730.3.8.3.1 NAME 'ipaUniqueID' DESC 'Unique identifier' EQUALITY caseIgnoreMatch ORDERING caseIgnoreOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE X-ORIGIN 'IPA v2 (ldapgate test)' )
objectClasses: ( 2.16.840.1.113730.3.8.4.1 NAME 'ipaObject' DESC 'IPA objectclass' AUXILIARY MUST ( ipaUniqueID ) X-ORIGIN 'IPA v2 (ldapgate test)' )
attributeTypes: ( 2.16.840.1.113719.1.301.4.10.1 NAME 'krbPrincipalExpiration' EQUALITY generalizedTimeMatch ORDERING generalizedTimeOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.24 SINGLE-VALUE X-ORIGIN 'MIT Kerberos (ldapgate test)' )
attributeTypes: ( 2.16.840.1.113719.1.301.4.11.1 NAME 'krbPasswordExpiration' EQUALITY generalizedTimeMatch ORDERING generalizedTimeOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.24 SINGLE-VALUE X-ORIGIN 'MIT Kerberos (ldapgate test)' )
objectClasses: ( 2.16.840.1.113719.1.301.6.8.1 NAME 'krbPrincipalAux' SUP top AUXILIARY MAY ( krbPrincipalExpiration $ krbPasswordExpiration ) X-ORIGIN 'MIT Kerberos (ldapgate test)' )
EOF
	chown dirsrv:dirsrv "$CONF_DIR/schema/98ldapgate-ipa.ldif"

	reissue_cert
}

# reissue_cert replaces dscreate's Server-Cert with one that names 127.0.0.1
# as an IP SAN, signed by the same Self-Signed-CA (whose key dscreate keeps in
# the private etc/dirsrv/ssca database), and exports that CA.
reissue_cert() {
	local db=sql:$CONF_DIR pwf=$CONF_DIR/pwdfile.txt
	local ssca=$PREFIX_DIR/etc/dirsrv/ssca tmp=$STATE/tls.tmp
	[ -f "$pwf" ] && [ -f "$ssca/pwdfile.txt" ] || die "no NSS password files (did dscreate make a self-signed cert?)"
	rm -rf "$tmp" && mkdir -p "$tmp"
	head -c 2048 /dev/urandom >"$tmp/noise"
	{
		certutil -F -d "$db" -f "$pwf" -n Server-Cert &&
			certutil -R -d "$db" -f "$pwf" -z "$tmp/noise" -k rsa -g 2048 \
				-s "CN=$HOST,O=ldapgate test" -o "$tmp/server.csr" &&
			certutil -C -d "sql:$ssca" -f "$ssca/pwdfile.txt" -c Self-Signed-CA \
				-i "$tmp/server.csr" -o "$tmp/server.der" -v 120 -m "$(date +%s)" \
				--extSAN "ip:$HOST,dns:localhost" --keyUsage digitalSignature,keyEncipherment \
				--extKeyUsage serverAuth &&
			certutil -A -d "$db" -f "$pwf" -n Server-Cert -t ',,' -i "$tmp/server.der" &&
			certutil -L -d "$db" -n Server-Cert -a >"$CONF_DIR/Server-Cert.crt" &&
			certutil -L -d "$db" -n Self-Signed-CA -a >"$STATE/ca.pem"
	} >"$STATE/certutil.log" 2>&1 || { cat "$STATE/certutil.log" >&2; die "certutil: cannot issue a Server-Cert for $HOST"; }
	rm -rf "$tmp"
	chown dirsrv "$CONF_DIR"/*.db "$CONF_DIR/Server-Cert.crt"
	chmod 644 "$STATE/ca.pem"
}

wait_ready() {
	local i
	for i in $(seq 1 150); do
		if ldapsearch -x -H "ldap://$HOST:$PORT" -D "$ADMIN_DN" -w "$ADMIN_PW" \
			-b "$SUFFIX" -s base -LLL dn >/dev/null 2>&1; then
			return 0
		fi
		# The daemon writes its pid file only once it is up, so a missing file
		# means "not yet"; a file naming a dead process means it died.
		if [ -s "$PID_FILE" ] && ! server_pid >/dev/null; then
			show_errors
			die "ns-slapd exited during start-up (errors log above)"
		fi
		sleep 0.1
	done
	show_errors
	die "ns-slapd did not answer on ldap://$HOST:$PORT within 15 s"
}

# seed_tree adds the FreeIPA containers; already-present entries are fine, so
# a reused instance keeps its content.
seed_tree() {
	local out rc=0
	out=$(ldapadd -c -x -H "ldap://$HOST:$PORT" -D "$ADMIN_DN" -w "$ADMIN_PW" 2>&1 <<EOF
dn: cn=accounts,$SUFFIX
objectClass: top
objectClass: nsContainer
cn: accounts

dn: cn=users,cn=accounts,$SUFFIX
objectClass: top
objectClass: nsContainer
cn: users

dn: cn=groups,cn=accounts,$SUFFIX
objectClass: top
objectClass: nsContainer
cn: groups
EOF
	) || rc=$?
	# 68: already exists (reused instance).
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 68 ]; then
		echo "$out" >&2
		die "ldapadd of the cn=accounts tree failed (rc $rc)"
	fi
}

# enable_live_plugins turns on the Retro Changelog and Content
# Synchronization plugins (RFC 4533 refreshAndPersist, for ldapgate's live
# mode) and prints "changed" when it did: a plugin takes effect only after
# a restart.
enable_live_plugins() {
	local cn changed=
	for cn in 'Retro Changelog Plugin' 'Content Synchronization'; do
		if ldapsearch -LLL -x -H "ldap://$HOST:$PORT" -D "$ADMIN_DN" -w "$ADMIN_PW" \
			-b "cn=$cn,cn=plugins,cn=config" -s base nsslapd-pluginEnabled | grep -qi '^nsslapd-pluginEnabled: on'; then
			continue
		fi
		printf 'dn: cn=%s,cn=plugins,cn=config\nchangetype: modify\nreplace: nsslapd-pluginEnabled\nnsslapd-pluginEnabled: on\n' "$cn" |
			ldapmodify -x -H "ldap://$HOST:$PORT" -D "$ADMIN_DN" -w "$ADMIN_PW" >/dev/null
		changed=1
	done
	[ -z "$changed" ] || echo changed
}

start() {
	need dscreate ns-slapd certutil unshare ip ldapsearch ldapadd awk
	[ "$(id -u)" -eq 0 ] || die "must run as root (dscreate, unshare -n, ns-slapd dropping to dirsrv)"
	id dirsrv >/dev/null 2>&1 || die "user dirsrv missing: install 389-ds-base"

	stop_server
	if [ "${LDAPGATE_TEST_389_FRESH:-0}" = 1 ] || [ ! -f "$STAMP" ] ||
		[ "$(cat "$STAMP")" != "$PORT $LDAPS_PORT" ] || [ ! -f "$CONF_DIR/dse.ldif" ]; then
		create_instance
	else
		log "reusing the instance in $PREFIX_DIR (LDAPGATE_TEST_389_FRESH=1 recreates it)"
	fi

	local t0
	t0=$(date +%s%N)
	mkdir -p "$RUN_DIR" && chown dirsrv:dirsrv "$RUN_DIR"
	# ns-slapd daemonizes itself; -i is where it writes its pid.
	ns-slapd -D "$CONF_DIR" -i "$PID_FILE" >"$STATE/ns-slapd.out" 2>&1 || { show_errors; die "ns-slapd failed to start"; }
	wait_ready
	if [ "$(enable_live_plugins)" = changed ]; then
		log "restarting ns-slapd: live-change plugins enabled"
		stop_server
		ns-slapd -D "$CONF_DIR" -i "$PID_FILE" >"$STATE/ns-slapd.out" 2>&1 || { show_errors; die "ns-slapd failed to start"; }
		wait_ready
	fi
	seed_tree
	log "started on ldap://$HOST:$PORT and ldaps://$HOST:$LDAPS_PORT in $(elapsed "$t0")"

	# %q quotes for the shell that evals this.
	printf 'export %s=%q\n' \
		LDAPGATE_TEST_389_URL "ldap://$HOST:$PORT" \
		LDAPGATE_TEST_389_LDAPS_URL "ldaps://$HOST:$LDAPS_PORT" \
		LDAPGATE_TEST_389_CA "$STATE/ca.pem" \
		LDAPGATE_TEST_389_BASE "$SUFFIX" \
		LDAPGATE_TEST_389_ADMIN_DN "$ADMIN_DN" \
		LDAPGATE_TEST_389_ADMIN_PASSWORD "$ADMIN_PW" >"$STATE/server.env"
	cat "$STATE/server.env"
}

case "$CMD" in
start) start ;;
stop) stop_server ;;
*) usage ;;
esac
