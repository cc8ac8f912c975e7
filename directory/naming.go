package directory

import (
	"github.com/ldapgate/ldapgate/account"
	"strings"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/config"
)

// CanonicalName is the ldapgate username of a directory user (SPEC §3):
// lower(username)@domain, or under legacy `naming: email` the lower-cased
// mail. ok is false when the user has no usable name: no mail under email
// naming (sync rule 1 skips them), or no login attribute or domain.
func CanonicalName(cfg config.Directory, u User) (string, bool) {
	if cfg.Naming == config.NamingEmail {
		mail := account.NormalizeName(u.Email)
		return mail, mail != ""
	}
	name := account.NormalizeName(u.Username)
	domain := strings.ToLower(cfg.DomainName())
	if name == "" || domain == "" {
		return "", false
	}
	return name + "@" + domain, true
}

// NormalizeDN is the form DNs are compared in (SPEC §3: RFC 4514,
// case-insensitive): parsed, attribute types and values lower-cased, spaces
// around separators dropped, multi-valued RDNs sorted, and re-serialised with
// RFC 4514 escaping. A string that does not parse is only lower-cased, so two
// identical bad strings still compare equal.
func NormalizeDN(dn string) string {
	parsed, err := ldap.ParseDN(dn)
	if err != nil {
		return strings.ToLower(dn)
	}
	for _, rdn := range parsed.RDNs {
		for _, av := range rdn.Attributes {
			av.Type = strings.ToLower(av.Type)
			av.Value = strings.ToLower(av.Value)
		}
	}
	return parsed.String()
}

// EqualDN compares two DNs per NormalizeDN.
func EqualDN(a, b string) bool { return NormalizeDN(a) == NormalizeDN(b) }
