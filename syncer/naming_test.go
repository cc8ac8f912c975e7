package syncer

import "testing"

// normalizeDN returns its input, uncopied, when isNormalDN says it is in
// normal form already; that shortcut must agree with the full path.
func TestNormalizeDNShortcut(t *testing.T) {
	for _, tc := range []struct {
		dn     string
		normal bool
	}{
		{"uid=alice,ou=people,dc=example,dc=com", true},
		{"cn=a=b,dc=x", true},
		{"UID=alice,ou=people", false},
		{"uid=alice, ou=people", false},
		{"uid=al\\2cice,ou=people", false},
		{"cn=a+sn=b,dc=x", false},
		{"uid=bj\u00f6rn,dc=x", false},
		{"uid=alice,,dc=x", false},
		{"uid=alice,", false},
		{"noequals", false},
		{"", false},
		{"uid=alice\v,dc=x", false},
	} {
		if got := isNormalDN(tc.dn); got != tc.normal {
			t.Errorf("isNormalDN(%q) = %v, want %v", tc.dn, got, tc.normal)
		}
		if tc.normal && copyNormalDN(tc.dn) != tc.dn {
			t.Errorf("%q is called normal but normalises to %q", tc.dn, copyNormalDN(tc.dn))
		}
		if normalizeDN(tc.dn) != copyNormalDN(tc.dn) {
			t.Errorf("normalizeDN(%q) = %q, full path %q", tc.dn, normalizeDN(tc.dn), copyNormalDN(tc.dn))
		}
	}
}

// DNs come from the directory (group member values, memberOf) and from the
// config's role_mapping: the shortcut must never change what they compare
// equal to.
func FuzzNormalizeDN(f *testing.F) {
	for _, s := range []string{"uid=alice,ou=people,dc=example,dc=com", "CN=Staff, OU=Groups", "cn=a\\,b,dc=x",
		"cn=a+sn=b", "=", ",", "a=b,", "a=\u00e9", "a=b\tc"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, dn string) {
		full := copyNormalDN(dn)
		if isNormalDN(dn) && full != dn {
			t.Fatalf("%q taken as normal, full path gives %q", dn, full)
		}
		if got := normalizeDN(dn); got != full {
			t.Fatalf("normalizeDN(%q) = %q, full path %q", dn, got, full)
		}
	})
}
