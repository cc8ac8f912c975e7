package syncer

import (
	"slices"
	"testing"

	"github.com/ldapgate/ldapgate/directory"
)

// TestAffectedMembers: a group change re-plans exactly the users the
// changed groups reach before or after it, through nesting either way.
func TestAffectedMembers(t *testing.T) {
	const (
		staff = "cn=staff,ou=g,dc=x"
		devs  = "cn=devs,ou=g,dc=x"
		admin = "cn=admins,ou=g,dc=x"
		bob   = "uid=bob,ou=u,dc=x"
		dave  = "uid=dave,ou=u,dc=x"
		alice = "uid=alice,ou=u,dc=x"
	)
	base := []directory.Group{
		{DN: staff, Members: []string{bob, devs}},
		{DN: devs, Members: []string{dave}},
		{DN: admin, Members: []string{alice}},
	}
	with := func(dn string, g directory.Group) []directory.Group {
		out := slices.Clone(base)
		for i := range out {
			if out[i].DN == dn {
				out[i] = g
			}
		}
		return out
	}
	for _, tc := range []struct {
		name          string
		before, after []directory.Group
		dns, uids     []string
	}{
		{"nothing changed", base, base, nil, nil},
		{"user removed", base, with(staff, directory.Group{DN: staff, Members: []string{devs}}), []string{bob, dave}, nil},
		{"nested group removed", base, with(staff, directory.Group{DN: staff, Members: []string{bob}}), []string{bob, dave}, nil},
		{"inner group changed", base, with(devs, directory.Group{DN: devs, Members: []string{dave, alice}}), []string{alice, dave}, nil},
		{"group deleted", base, base[:2], []string{alice}, nil},
		{"posix memberUid", base, append(slices.Clone(base), directory.Group{DN: "cn=p,ou=g,dc=x", MemberUIDs: []string{"erin"}}), nil, []string{"erin"}},
		{"DN spelling differs only in case", base, with(admin, directory.Group{DN: "CN=admins,OU=g,DC=x", Members: []string{alice}}), nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dns, uids := affectedMembers(tc.before, tc.after)
			if !slices.Equal(dns, tc.dns) || !slices.Equal(uids, tc.uids) {
				t.Errorf("got %v %v, want %v %v", dns, uids, tc.dns, tc.uids)
			}
		})
	}
}
