package syncer

import (
	"slices"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// normalizeDN gives the form two DNs compare equal in when RFC 4514 says they
// are the same: attribute types and values lower-cased, spaces around
// separators dropped, escapes decoded and re-encoded one way, multi-valued
// RDNs sorted. Group member values and role_mapping keys are written by
// different people and tools; "CN=Admins, OU=Groups" must match
// "cn=admins,ou=groups".
func normalizeDN(dn string) string {
	if isNormalDN(dn) {
		// Most servers return DNs exactly as stored, and OpenLDAP's are
		// usually lower case already: no copy (a sync normalises every
		// member value of every group and every user DN).
		return dn
	}
	return copyNormalDN(dn)
}

// copyNormalDN is normalizeDN without the no-copy shortcut.
func copyNormalDN(dn string) string {
	if !strings.ContainsAny(dn, `\"+#;<>`) {
		// Fast path for the plain DNs that make up nearly every directory:
		// no escapes, so splitting on ',' and the first '=' is exact.
		var b strings.Builder
		b.Grow(len(dn))
		for i, rdn := range strings.Split(dn, ",") {
			if i > 0 {
				b.WriteByte(',')
			}
			t, v, ok := strings.Cut(rdn, "=")
			if !ok {
				return slowNormalizeDN(dn)
			}
			b.WriteString(strings.ToLower(strings.TrimSpace(t)))
			b.WriteByte('=')
			b.WriteString(strings.ToLower(strings.TrimSpace(v)))
		}
		return b.String()
	}
	return slowNormalizeDN(dn)
}

// isNormalDN reports whether normalizeDN would return dn unchanged: plain
// lower-case ASCII, no spaces or escapes, and an '=' in every RDN.
func isNormalDN(dn string) bool {
	seenEq := false
	for i := 0; i < len(dn); i++ {
		switch c := dn[i]; {
		case c >= 'A' && c <= 'Z', c >= 0x80, c == ' ', c == '\t', c == '\n', c == '\r', c == '\v', c == '\f',
			c == '\\', c == '"', c == '+', c == '#', c == ';', c == '<', c == '>':
			return false
		case c == '=':
			seenEq = true
		case c == ',':
			if !seenEq {
				return false
			}
			seenEq = false
		}
	}
	return seenEq
}

func slowNormalizeDN(dn string) string {
	parsed, err := ldap.ParseDN(dn)
	if err != nil {
		// Not a DN we can parse: still compare case-insensitively rather
		// than dropping the value.
		return strings.ToLower(strings.TrimSpace(dn))
	}
	rdns := make([]string, 0, len(parsed.RDNs))
	for _, r := range parsed.RDNs {
		avas := make([]string, 0, len(r.Attributes))
		for _, a := range r.Attributes {
			avas = append(avas, strings.ToLower(strings.TrimSpace(a.Type))+"="+
				escapeDNValue(strings.ToLower(strings.TrimSpace(a.Value))))
		}
		slices.Sort(avas)
		rdns = append(rdns, strings.Join(avas, "+"))
	}
	return strings.Join(rdns, ",")
}

// escapeDNValue re-escapes a decoded value the one way (RFC 4514 §2.4),
// so `a\2cb` and `a\,b` give the same string.
func escapeDNValue(v string) string {
	var b strings.Builder
	for i, r := range v {
		if strings.ContainsRune(`\"+,;<>`, r) || (i == 0 && r == '#') {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// rdnValue is the value of a DN's first RDN ("cn=Admins,ou=g" → "Admins"):
// the group name to use when the group's own entry was not read.
func rdnValue(dn string) string {
	parsed, err := ldap.ParseDN(dn)
	if err != nil || len(parsed.RDNs) == 0 || len(parsed.RDNs[0].Attributes) == 0 {
		return ""
	}
	return parsed.RDNs[0].Attributes[0].Value
}
