package directory

import (
	"testing"

	"github.com/ldapgate/ldapgate/config"
)

func TestCanonicalName(t *testing.T) {
	at := config.Directory{Domain: "Example.COM", Naming: config.NamingUsernameAtDomain}
	mail := config.Directory{Domain: "example.com", Naming: config.NamingEmail}
	for _, tc := range []struct {
		name string
		cfg  config.Directory
		u    User
		want string
		ok   bool
	}{
		{"username at domain, lower-cased", at, User{Username: "Alice", Email: "x@y.z"}, "alice@example.com", true},
		{"default naming is username_at_domain", config.Directory{Domain: "example.com"}, User{Username: "bob"}, "bob@example.com", true},
		{"uid with star kept as is", at, User{Username: "st*r"}, "st*r@example.com", true},
		{"no username", at, User{Email: "a@b.c"}, "", false},
		{"email naming lower-cases the mail", mail, User{Username: "alice", Email: "Alice@Example.com"}, "alice@example.com", true},
		{"email naming, no mail: skipped (rule 1)", mail, User{Username: "alice"}, "", false},
		{"no domain", config.Directory{}, User{Username: "alice"}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := CanonicalName(tc.cfg, tc.u)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("CanonicalName = %q, %v; want %q, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestNormalizeDN(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"CN=Admins,OU=Groups,DC=Example,DC=com", "cn=admins,ou=groups,dc=example,dc=com"},
		{"cn=admins, ou=groups , dc=example,dc=com", "cn=admins,ou=groups,dc=example,dc=com"},
		{"uid=a+cn=B,dc=x", "cn=b+uid=a,dc=x"},
		{"UID=A+CN=b,DC=X", "cn=b+uid=a,dc=x"},
		{`cn=Smith\, John,dc=x`, `cn=smith\, john,dc=x`},
		{`cn=Smith\2C John,dc=x`, `cn=smith\, john,dc=x`},
		{`uid=st*r,dc=x`, `uid=st*r,dc=x`},
		{"CN=Users,CN=Builtin,DC=EXAMPLE,DC=COM", "cn=users,cn=builtin,dc=example,dc=com"},
		{"", ""},
		{"Not A DN", "not a dn"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := NormalizeDN(tc.in); got != tc.want {
				t.Fatalf("NormalizeDN(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestEqualDN(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"CN=Staff,OU=Groups,DC=example,DC=com", "cn=staff, ou=groups, dc=EXAMPLE, dc=com", true},
		{`cn=a\,b,dc=x`, `CN=A\2cB,DC=X`, true},
		{"cn=staff,dc=x", "cn=staff2,dc=x", false},
		{"cn=staff,dc=x", "cn=staff,dc=x,dc=y", false},
		{"uid=a+cn=b,dc=x", "cn=B+uid=A,dc=x", true},
	} {
		if got := EqualDN(tc.a, tc.b); got != tc.want {
			t.Errorf("EqualDN(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
