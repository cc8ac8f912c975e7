package ldaptest

import (
	"testing"

	"github.com/go-ldap/ldap/v3"
)

// TestSlapdSyncprov: the harness slapd runs the syncprov overlay, so an
// RFC 4533 sync search (critical: a server without it answers
// unavailableCriticalExtension) returns the entries.
func TestSlapdSyncprov(t *testing.T) {
	s := StartSlapd(t)
	if s == nil {
		return
	}
	f := s.NewFixture(t)
	c := s.AdminConn(t)
	res, err := c.Search(ldap.NewSearchRequest(f.usersDN(), ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(uid="+ldap.EscapeFilter(f.Users["alice"])+")", []string{"uid"},
		[]ldap.Control{ldap.NewControlSyncRequest(ldap.SyncRequestModeRefreshOnly, nil, false)}))
	if err != nil || len(res.Entries) != 1 {
		t.Fatalf("sync search: %v (%d entries)", err, len(resEntries(res)))
	}
}

func resEntries(r *ldap.SearchResult) []*ldap.Entry {
	if r == nil {
		return nil
	}
	return r.Entries
}
