package directory

import (
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/ldapgate/ldapgate/config"
)

// TestLiveBase: one stream covers users_dn and groups_dn, from their
// deepest common ancestor; AD's DirSync always starts at the domain root.
func TestLiveBase(t *testing.T) {
	for _, tc := range []struct {
		typ, users, groups, want string
	}{
		{config.TypeLDAP, "ou=users,ou=t1", "ou=groups,ou=t1", "ou=t1,dc=example,dc=com"},
		{config.TypeLDAP, "ou=people", "ou=groups", "dc=example,dc=com"},
		{config.TypeLDAP, "", "ou=groups", "dc=example,dc=com"},
		{config.TypeLDAP, "OU=Users,ou=T1", "ou=groups,OU=t1", "ou=T1,dc=example,dc=com"},
		{config.TypeActiveDirectory, "OU=a", "OU=b,OU=a", "dc=example,dc=com"},
	} {
		l, err := Open(config.Directory{Name: "d", Type: tc.typ, URLs: []string{"ldap://127.0.0.1:1"},
			BaseDN: "dc=example,dc=com", UsersDN: tc.users, GroupsDN: tc.groups}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := l.liveBase(); !stringsEqualFold(got, tc.want) {
			t.Errorf("%s %q %q: %q, want %q", tc.typ, tc.users, tc.groups, got, tc.want)
		}
		if !l.InUsers("uid=x,"+l.s.usersBase) || l.InUsers("uid=x,ou=elsewhere,dc=example,dc=com") && tc.users != "" {
			t.Errorf("%s: InUsers wrong for users base %q", tc.typ, l.s.usersBase)
		}
	}
}

func stringsEqualFold(a, b string) bool { return NormalizeDN(a) == NormalizeDN(b) }

// TestUUIDForms: a syncUUID matches both entryUUID's text and 389-ds's
// nsUniqueId layout of the same 16 bytes.
func TestUUIDForms(t *testing.T) {
	id := uuid.MustParse("a1b2c3d4-e5f6-4708-9a0b-1c2d3e4f5a6b")
	want := []string{"a1b2c3d4-e5f6-4708-9a0b-1c2d3e4f5a6b", "a1b2c3d4-e5f64708-9a0b1c2d-3e4f5a6b"}
	if got := uuidForms(id); !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
