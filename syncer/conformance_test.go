package syncer

import (
	"context"
	"errors"
	"testing"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/cache/badgerstore"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/directory"
	"github.com/ldapgate/ldapgate/internal/ldaptest"
)

// TestSyncConformance runs one table of expectations against every
// directory flavour (fresh slapd, shared Samba AD DC, shared 389-ds shaped
// like FreeIPA): roles through nesting, the flavour's disabled flag, AD's
// rule 2 (primary group, outsiders), then deletion and locking.
func TestSyncConformance(t *testing.T) {
	ldaptest.Each(t, func(t *testing.T, srv *ldaptest.Server) {
		ctx := context.Background()
		fx := srv.NewFixture(t)
		dir := fx.Dir
		dir.ID = testDirID
		f := 0.5 // one change per sync in a small directory
		dir.MaxBlockFraction = &f
		dir.ApplyDefaults()
		client, err := directory.Open(dir, testLogger(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		set := directory.NewSet()
		set.Replace([]*directory.Entry{{Config: dir, Client: client}})
		store, err := badgerstore.Open(t.TempDir(), testLogger(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		s := New(store.Backend(), set, config.DefaultRoles(), testLogger(t), nil)

		expect := func(name, role string, st account.State, reason account.BlockReason) {
			t.Helper()
			u, err := store.UserByName(ctx, fx.Login(name))
			if err != nil {
				t.Errorf("%s: %v", name, err)
				return
			}
			if u.Role != role || u.State != st || u.BlockReason != reason {
				t.Errorf("%s: role=%s state=%s reason=%q, want %s %s %q", name, u.Role, u.State, u.BlockReason, role, st, reason)
			}
		}
		absent := func(name string) {
			t.Helper()
			if _, err := store.UserByName(ctx, fx.Login(name)); !errors.Is(err, cache.ErrNotFound) {
				t.Errorf("%s must be skipped: %v", name, err)
			}
		}

		run, err := s.Sync(ctx, testDirID, Options{})
		if err != nil {
			t.Fatalf("first sync: %v %+v", err, run)
		}
		expect("alice", "admin", account.StateActive, "")
		expect("frank", "admin", account.StateActive, "")
		expect("bob", "user", account.StateActive, "")
		expect("dave", "user", account.StateActive, "") // devs nested in staff
		expect("star", "user", account.StateActive, "")
		expect("carol", "user", account.StateBlockedInLDAP, "")
		absent("erin")
		if _, ok := fx.Users["outsider"]; ok { // AD: rule 2
			absent("outsider")
			expect("primary", "user", account.StateActive, "") // staff as primary group
		}

		fx.DeleteUser(t, "bob")
		if _, err := s.Sync(ctx, testDirID, Options{}); err != nil {
			t.Fatal(err)
		}
		expect("bob", "user", account.StateBlocked, account.ReasonDeletedInLDAP)

		fx.SetDisabled(t, "dave", true)
		fx.SetDisabled(t, "carol", false)
		if _, err := s.Sync(ctx, testDirID, Options{}); err != nil {
			t.Fatal(err)
		}
		expect("dave", "user", account.StateBlockedInLDAP, "")
		expect("carol", "user", account.StateActive, "")

		run, err = s.Sync(ctx, testDirID, Options{})
		if err != nil || writes(run) != 0 {
			t.Errorf("unchanged re-sync: %v %v", run.Counts, err)
		}
	})
}
