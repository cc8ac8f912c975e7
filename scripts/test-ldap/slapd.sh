#!/bin/sh
# slapd.sh DIR PORT TLSPORT [EXTRA_LDIF]
#
# Prepares and starts a throw-away OpenLDAP slapd (2.5, Debian 12) for tests:
#   - DIR/slapd.conf: mdb under DIR/db, suffix dc=example,dc=com, schemas
#     core/cosine/inetorgperson/nis, overlays memberof, ppolicy and syncprov
#     (RFC 4533 refreshAndPersist for live changes);
#   - a self-signed CA and server certificate (IP SAN 127.0.0.1, DNS localhost)
#     unless DIR/ca.pem, DIR/server.pem and DIR/server.key already exist (the
#     Go harness writes them once per test binary, saving two key generations);
#   - base entries (and EXTRA_LDIF, if given) loaded offline with slapadd;
#   - slapd listening on ldap://127.0.0.1:PORT/ and ldaps://127.0.0.1:TLSPORT/.
# Prints slapd's PID once it answers. slapd's stderr goes to DIR/slapd.log.
#
# Accounts:
#   cn=admin,dc=example,dc=com / $SLAPD_ADMIN_PASSWORD (default admin-secret):
#     a REAL entry with manage rights, not the rootdn. Why: slapd exempts the
#     rootdn from every size limit, and the harness needs the service account
#     to hit sizeLimitExceeded on non-paged searches (so clients must page).
#   cn=root,dc=example,dc=com / same password: the rootdn, for repairs by hand.
#
# Size limits for everyone: 3 entries for a normal search (fixtures have more
# users than that), unlimited for paged searches (RFC 2696).
#
# SLAPD_PREPARE_ONLY=1 does everything but start slapd (the Go harness starts
# it itself so it owns the process and its stderr).
set -eu

if [ $# -lt 3 ] || [ $# -gt 4 ]; then
	echo "usage: $0 DIR PORT TLSPORT [EXTRA_LDIF]" >&2
	exit 2
fi
DIR=$1
PORT=$2
TLSPORT=$3
EXTRA=${4:-}
PASS=${SLAPD_ADMIN_PASSWORD:-admin-secret}
SLAPD=${SLAPD:-/usr/sbin/slapd}
SLAPADD=${SLAPADD:-/usr/sbin/slapadd}
# mdb's map size is virtual (a sparse file); 4 GiB holds far more than the
# 100,000-user benchmark directory.
MAXSIZE=${SLAPD_MAXSIZE:-4294967296}

[ -x "$SLAPD" ] || { echo "slapd.sh: $SLAPD not found (apt-get install slapd ldap-utils)" >&2; exit 3; }

mkdir -p "$DIR/db"
DIR=$(cd "$DIR" && pwd)

# --- certificates --------------------------------------------------------
if [ ! -s "$DIR/ca.pem" ] || [ ! -s "$DIR/server.pem" ] || [ ! -s "$DIR/server.key" ]; then
	openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
		-keyout "$DIR/ca.key" -out "$DIR/ca.pem" -days 3650 \
		-subj "/CN=ldapgate test CA" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
	openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
		-keyout "$DIR/server.key" -out "$DIR/server.csr" \
		-subj "/CN=localhost" 2>/dev/null
	printf '%s\n' \
		"basicConstraints=CA:FALSE" \
		"keyUsage=critical,digitalSignature,keyEncipherment" \
		"extendedKeyUsage=serverAuth" \
		"subjectAltName=IP:127.0.0.1,DNS:localhost" >"$DIR/server.ext"
	openssl x509 -req -in "$DIR/server.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" \
		-CAcreateserial -out "$DIR/server.pem" -days 3650 \
		-extfile "$DIR/server.ext" 2>/dev/null
fi
# slapd may drop to the openldap user when run by hand with -u; keep the key
# readable by it but by nobody else.
chmod 0640 "$DIR/server.key"
if id openldap >/dev/null 2>&1; then chgrp openldap "$DIR/server.key" 2>/dev/null || true; fi

# --- configuration ---------------------------------------------------------
cat >"$DIR/slapd.conf" <<EOF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema

modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
moduleload ppolicy
moduleload syncprov

pidfile "$DIR/slapd.pid"
argsfile "$DIR/slapd.args"

TLSCACertificateFile "$DIR/ca.pem"
TLSCertificateFile "$DIR/server.pem"
TLSCertificateKeyFile "$DIR/server.key"

# Normal searches stop at 3 entries (resultCode 4, sizeLimitExceeded) while
# paged ones are unlimited: a client that forgets to page fails loudly.
sizelimit size.soft=3 size.hard=3 size.pr=unlimited size.prtotal=unlimited

database mdb
maxsize $MAXSIZE
suffix "dc=example,dc=com"
rootdn "cn=root,dc=example,dc=com"
rootpw $PASS
directory "$DIR/db"
index objectClass eq
index uid,cn,mail eq,sub
index member,memberOf eq
index entryUUID eq
index entryCSN eq
limits dn.exact="cn=admin,dc=example,dc=com" size.soft=3 size.hard=3 size.pr=unlimited size.prtotal=unlimited

access to attrs=userPassword
	by dn.exact="cn=admin,dc=example,dc=com" manage
	by self write
	by anonymous auth
	by * none
access to *
	by dn.exact="cn=admin,dc=example,dc=com" manage
	by * read

overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint TRUE
memberof-dangling ignore

overlay ppolicy
ppolicy_default "cn=default,ou=policies,dc=example,dc=com"
ppolicy_use_lockout

overlay syncprov
syncprov-checkpoint 100 10
syncprov-sessionlog 1000
EOF

# --- data --------------------------------------------------------------------
cat >"$DIR/base.ldif" <<EOF
dn: dc=example,dc=com
objectClass: top
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: cn=admin,dc=example,dc=com
objectClass: person
cn: admin
sn: admin
userPassword: $PASS

dn: ou=users,dc=example,dc=com
objectClass: organizationalUnit
ou: users

dn: ou=groups,dc=example,dc=com
objectClass: organizationalUnit
ou: groups

dn: ou=policies,dc=example,dc=com
objectClass: organizationalUnit
ou: policies

# pwdMaxFailure 0: failed binds never lock anyone (tests fail binds on
# purpose); pwdLockout TRUE so an admin-set pwdAccountLockedTime disables.
dn: cn=default,ou=policies,dc=example,dc=com
objectClass: organizationalRole
objectClass: pwdPolicy
cn: default
pwdAttribute: userPassword
pwdLockout: TRUE
pwdMaxFailure: 0
pwdAllowUserChange: TRUE
pwdMustChange: FALSE

# The account-state policy (SPEC §13), for users given it through
# pwdPolicySubentry (ldaptest's Fixture.UseStatesPolicy). Kept apart from
# the default so tests that set passwords as cn=admin do not get pwdReset.
# pwdMaxAge expires passwords older than 30 days (no grace login), an
# administrator's password change sets pwdReset (pwdMustChange), new
# passwords need 12 characters and must not repeat the last 3, and 3
# failed binds lock the account for 10 minutes.
dn: cn=states,ou=policies,dc=example,dc=com
objectClass: organizationalRole
objectClass: pwdPolicy
cn: states
pwdAttribute: userPassword
pwdMaxAge: 2592000
pwdGraceAuthNLimit: 0
pwdMustChange: TRUE
pwdAllowUserChange: TRUE
pwdMinLength: 12
pwdCheckQuality: 2
pwdInHistory: 3
pwdLockout: TRUE
pwdMaxFailure: 3
pwdLockoutDuration: 600
EOF

if [ -z "$(ls -A "$DIR/db")" ]; then
	"$SLAPADD" -q -f "$DIR/slapd.conf" -l "$DIR/base.ldif" 2>"$DIR/slapadd.log" ||
		{ cat "$DIR/slapadd.log" >&2; exit 1; }
	if [ -n "$EXTRA" ]; then
		"$SLAPADD" -q -f "$DIR/slapd.conf" -l "$EXTRA" 2>>"$DIR/slapadd.log" ||
			{ tail -n 20 "$DIR/slapadd.log" >&2; exit 1; }
	fi
fi

if [ "${SLAPD_PREPARE_ONLY:-}" = 1 ]; then
	exit 0
fi

# --- start -------------------------------------------------------------------
# -d none: foreground, printing only level-less messages (errors).
"$SLAPD" -d none -f "$DIR/slapd.conf" -h "ldap://127.0.0.1:$PORT/ ldaps://127.0.0.1:$TLSPORT/" \
	</dev/null >>"$DIR/slapd.log" 2>&1 &
PID=$!
i=0
while ! ldapsearch -x -LLL -o nettimeout=1 -H "ldap://127.0.0.1:$PORT/" -b "" -s base >/dev/null 2>&1; do
	if ! kill -0 "$PID" 2>/dev/null; then
		echo "slapd.sh: slapd exited:" >&2
		tail -n 20 "$DIR/slapd.log" >&2
		exit 1
	fi
	i=$((i + 1))
	if [ "$i" -gt 100 ]; then
		echo "slapd.sh: slapd did not answer within 10s" >&2
		kill -9 "$PID" 2>/dev/null || true
		tail -n 20 "$DIR/slapd.log" >&2
		exit 1
	fi
	sleep 0.1
done
echo "$PID"
