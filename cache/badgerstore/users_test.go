package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
)

func TestUserCRUD(t *testing.T) {
	ctx := context.Background()
	s, m := openTestMetrics(t)
	before := time.Now().UTC()
	u := mustCreate(t, s, localUser("  Root@Local ", "admin"))
	if u.ID == 0 || u.Username != "root@local" {
		t.Fatalf("created %+v: want an id and the normalised name", u)
	}
	if u.CreatedAt.Before(before) || !u.UpdatedAt.Equal(u.CreatedAt) {
		t.Fatalf("timestamps: created %v updated %v (before %v)", u.CreatedAt, u.UpdatedAt, before)
	}

	reads := []struct {
		name   string
		cached bool // served from the LRU: one hit, no miss
		get    func() (account.User, error)
	}{
		{"by id", false, func() (account.User, error) { return s.UserByID(ctx, u.ID) }},
		{"by id (cached)", true, func() (account.User, error) { return s.UserByID(ctx, u.ID) }},
		{"by name", false, func() (account.User, error) { return s.UserByName(ctx, "ROOT@local") }},
		{"by name (cached)", true, func() (account.User, error) { return s.UserByName(ctx, "root@local") }},
	}
	hits, misses := m.CacheRequests.WithLabelValues("user", "hit"), m.CacheRequests.WithLabelValues("user", "miss")
	for _, r := range reads {
		h0, m0 := counterValue(t, hits), counterValue(t, misses)
		got, err := r.get()
		if dh, dm := counterValue(t, hits)-h0, counterValue(t, misses)-m0; r.cached && (dh != 1 || dm != 0) {
			t.Errorf("%s: %v cache hits, %v misses; want the cache hit", r.name, dh, dm)
		}
		if err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		if got.ID != u.ID || got.PasswordHash != u.PasswordHash || got.Role != "admin" || !got.CreatedAt.Equal(u.CreatedAt) {
			t.Fatalf("%s: got %+v, want %+v", r.name, got, u)
		}
	}

	time.Sleep(2 * time.Millisecond)
	up, err := s.UpdateUser(ctx, u.ID, func(x *account.User) error {
		x.Role = "user"
		x.Email = "root@example.com"
		x.ID = 999 // ignored: ids are the store's
		return nil
	})
	if err != nil {
		t.Fatalf("UpdateUser: %v", err)
	}
	if up.ID != u.ID || up.Role != "user" || !up.UpdatedAt.After(u.UpdatedAt) || !up.CreatedAt.Equal(u.CreatedAt) {
		t.Fatalf("updated %+v from %+v", up, u)
	}
	got, _ := s.UserByID(ctx, u.ID)
	if got.Role != "user" || got.Email != "root@example.com" {
		t.Fatalf("read after update: %+v", got)
	}
	if _, err := s.UserByID(ctx, 999); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("UserByID(999): %v, want ErrNotFound", err)
	}

	fnErr := errors.New("refused")
	if _, err := s.UpdateUser(ctx, u.ID, func(*account.User) error { return fnErr }); !errors.Is(err, fnErr) {
		t.Fatalf("UpdateUser with failing fn: %v", err)
	}
	if _, err := s.UpdateUser(ctx, 12345, func(*account.User) error { return nil }); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("UpdateUser unknown: %v", err)
	}

	if err := s.DeleteUser(ctx, u.ID); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	for _, r := range reads {
		if _, err := r.get(); !errors.Is(err, cache.ErrNotFound) {
			t.Fatalf("%s after delete: %v, want ErrNotFound", r.name, err)
		}
	}
	if err := s.DeleteUser(ctx, u.ID); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("second DeleteUser: %v", err)
	}
	// The name is free again.
	mustCreate(t, s, localUser("root@local", "admin"))
}

func TestNameUniqueness(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	alice := mustCreate(t, s, ldapUser("alice@example.com", 1, "u-a", "user"))
	bob := mustCreate(t, s, ldapUser("bob@example.com", 1, "u-b", "user"))

	tests := []struct {
		name string
		do   func() error
		want error
	}{
		{"create same name", func() error { _, err := s.CreateUser(ctx, localUser("alice@example.com", "user")); return err }, cache.ErrNameTaken},
		{"create other case", func() error { _, err := s.CreateUser(ctx, localUser("ALICE@Example.COM", "user")); return err }, cache.ErrNameTaken},
		{"rename onto other", func() error {
			_, err := s.UpdateUser(ctx, bob.ID, func(u *account.User) error { u.Username = "Alice@example.com"; return nil })
			return err
		}, cache.ErrNameTaken},
		{"same uuid same directory", func() error { _, err := s.CreateUser(ctx, ldapUser("carol@example.com", 1, "u-a", "user")); return err }, cache.ErrUUIDTaken},
		{"same uuid other directory", func() error { _, err := s.CreateUser(ctx, ldapUser("carol@example.com", 2, "u-a", "user")); return err }, nil},
		{"keep own name", func() error {
			_, err := s.UpdateUser(ctx, alice.ID, func(u *account.User) error { u.Username = "ALICE@example.com"; return nil })
			return err
		}, nil},
		{"empty name", func() error { _, err := s.CreateUser(ctx, localUser("  ", "user")); return err }, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			switch {
			case tc.name == "empty name":
				if err == nil {
					t.Fatal("empty username accepted")
				}
			case !errors.Is(err, tc.want) && !(tc.want == nil && err == nil):
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	got, err := s.UserByName(ctx, "bob@example.com")
	if err != nil || got.ID != bob.ID {
		t.Fatalf("bob after refused rename: %+v %v", got, err)
	}
}

func TestRenameUpdatesIndexes(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	u := mustCreate(t, s, ldapUser("old@example.com", 3, "uuid-1", "user"))
	// Warm the caches so a stale name entry would show.
	if _, err := s.UserByName(ctx, "old@example.com"); err != nil {
		t.Fatal(err)
	}
	err := s.Update(ctx, func(tx *Tx) error {
		x, err := tx.UserByUUID(3, "uuid-1")
		if err != nil {
			return err
		}
		x.Username = "New@Example.com"
		x.LDAPUUID = "uuid-2"
		x.DirectoryID = 4
		return tx.PutUser(&x)
	})
	if err != nil {
		t.Fatalf("rename: %v", err)
	}
	checks := []struct {
		name   string
		get    func() (account.User, error)
		wantID uint64
	}{
		{"old name", func() (account.User, error) { return s.UserByName(ctx, "old@example.com") }, 0},
		{"new name", func() (account.User, error) { return s.UserByName(ctx, "new@example.com") }, u.ID},
		{"old uuid", func() (account.User, error) { return s.UserByUUID(ctx, 3, "uuid-1") }, 0},
		{"new uuid", func() (account.User, error) { return s.UserByUUID(ctx, 4, "uuid-2") }, u.ID},
	}
	for _, c := range checks {
		got, err := c.get()
		if c.wantID == 0 {
			if !errors.Is(err, cache.ErrNotFound) {
				t.Errorf("%s: got %+v, %v; want ErrNotFound", c.name, got, err)
			}
			continue
		}
		if err != nil || got.ID != c.wantID || got.Username != "new@example.com" {
			t.Errorf("%s: got %+v, %v", c.name, got, err)
		}
	}
	if l, n, _ := s.ListUsers(ctx, cache.UserFilter{DirectoryID: 3}); n != 0 || len(l) != 0 {
		t.Errorf("directory 3 still lists %d users", n)
	}
	if l, n, _ := s.ListUsers(ctx, cache.UserFilter{DirectoryID: 4}); n != 1 || l[0].ID != u.ID {
		t.Errorf("directory 4 lists %d users", n)
	}
	// The old name and uuid are free for someone else.
	mustCreate(t, s, ldapUser("old@example.com", 3, "uuid-1", "user"))
}

func TestIDsNeverReused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir)
	seen := map[uint64]bool{}
	var last uint64
	create := func(s *Store, name string) account.User {
		u := mustCreate(t, s, localUser(name, "user"))
		if seen[u.ID] || u.ID <= last {
			t.Fatalf("id %d for %s: reused or not increasing (last %d)", u.ID, name, last)
		}
		seen[u.ID], last = true, u.ID
		return u
	}
	a := create(s, "a@local")
	b := create(s, "b@local")
	if err := s.DeleteUser(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	create(s, "b@local")
	// A failed transaction that drew an id does not give it back either.
	errStop := errors.New("stop")
	var drawn uint64
	err := s.Update(ctx, func(tx *Tx) error {
		u := localUser("c@local", "user")
		if err := tx.PutUser(&u); err != nil {
			return err
		}
		drawn = u.ID
		return errStop
	})
	if !errors.Is(err, errStop) || drawn == 0 {
		t.Fatalf("Update: %v (drawn %d)", err, drawn)
	}
	seen[drawn], last = true, drawn
	if _, err := s.UserByName(ctx, "c@local"); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("user of a failed transaction exists: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openTest(t, dir)
	create(s2, "d@local")
	if err := s2.DeleteUser(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopen without Close of the previous handle's lease would be a crash;
	// simulate losing the lease by not releasing: ids must still grow.
	s3 := openTest(t, dir)
	create(s3, "a@local")
	s3.db.Close() // no Release: the leased range is lost, as in a crash
	s4, err := Open(dir, s3.log, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s4.Close()
	create(s4, "e@local")
}

func TestUpdateRetriesConflictWithReusedUser(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	other := mustCreate(t, s, localUser("other@local", "user"))
	u := localUser("new@local", "user") // reused across attempts on purpose
	attempts := 0
	err := s.Update(ctx, func(tx *Tx) error {
		attempts++
		if _, err := tx.UserByID(other.ID); err != nil {
			return err
		}
		if err := tx.PutUser(&u); err != nil {
			return err
		}
		if attempts == 1 {
			// A concurrent writer changes what this transaction read:
			// its commit must conflict and fn run again.
			if _, err := s.UpdateUser(ctx, other.ID, func(x *account.User) error { x.Role = "admin"; return nil }); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if attempts != 2 {
		t.Fatalf("fn ran %d times, want 2 (conflict then success)", attempts)
	}
	got, err := s.UserByName(ctx, "new@local")
	if err != nil || got.ID != u.ID {
		t.Fatalf("user after retried create: %+v, %v (id in caller %d)", got, err, u.ID)
	}
	// A non-zero id that this Update did not draw is not a create.
	err = s.Update(ctx, func(tx *Tx) error {
		x := localUser("forged@local", "user")
		x.ID = u.ID + 1000
		return tx.PutUser(&x)
	})
	if !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("PutUser with a forged id: %v, want ErrNotFound", err)
	}
}

func TestListUsers(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	// id order: 1 local admin, then directory 7 and 5 users interleaved.
	specs := []struct {
		u     account.User
		state account.State
	}{
		{localUser("root@local", "admin"), account.StateActive},
		{ldapUser("a@seven", 7, "a", "user"), account.StateActive},
		{ldapUser("b@five", 5, "b", "admin"), account.StateActive},
		{ldapUser("c@seven", 7, "c", "user"), account.StateBlocked},
		{ldapUser("d@five", 5, "d", "user"), account.StateBlockedInLDAP},
		{ldapUser("e@seven", 7, "e", "advanced_user"), account.StateActive},
		{localUser("f@local", "user"), account.StateBlocked},
	}
	specs[5].u.DisplayName = "Erin Example"
	specs[6].u.Email = "F.Person@Corp.example"
	ids := map[string]uint64{}
	for _, sp := range specs {
		u := sp.u
		u.State = sp.state
		ids[u.Username] = mustCreate(t, s, u).ID
	}
	names := func(us []account.User) []string {
		var out []string
		for _, u := range us {
			out = append(out, u.Username)
		}
		return out
	}
	tests := []struct {
		name      string
		f         cache.UserFilter
		wantPage  []string
		wantTotal int
	}{
		{"all", cache.UserFilter{}, []string{"root@local", "a@seven", "b@five", "c@seven", "d@five", "e@seven", "f@local"}, 7},
		{"page", cache.UserFilter{Limit: 2, Offset: 2}, []string{"b@five", "c@seven"}, 7},
		{"offset past end", cache.UserFilter{Offset: 50}, nil, 7},
		{"negative offset", cache.UserFilter{Offset: -3, Limit: 1}, []string{"root@local"}, 7},
		{"directory", cache.UserFilter{DirectoryID: 7}, []string{"a@seven", "c@seven", "e@seven"}, 3},
		{"directory page", cache.UserFilter{DirectoryID: 7, Offset: 1, Limit: 1}, []string{"c@seven"}, 3},
		{"state active", cache.UserFilter{State: "active"}, []string{"root@local", "a@seven", "b@five", "e@seven"}, 4},
		{"state blocked", cache.UserFilter{State: "blocked"}, []string{"c@seven", "f@local"}, 2},
		{"role admin", cache.UserFilter{Role: "admin"}, []string{"root@local", "b@five"}, 2},
		{"source local", cache.UserFilter{Source: "local"}, []string{"root@local", "f@local"}, 2},
		{"combined", cache.UserFilter{Source: "ldap", State: "active", Role: "user"}, []string{"a@seven"}, 1},
		{"directory and state", cache.UserFilter{DirectoryID: 5, State: "blocked_in_ldap"}, []string{"d@five"}, 1},
		{"no match", cache.UserFilter{Role: "nobody"}, nil, 0},
		{"unknown directory", cache.UserFilter{DirectoryID: 99}, nil, 0},
		{"text in username", cache.UserFilter{Query: "seven"}, []string{"a@seven", "c@seven", "e@seven"}, 3},
		{"text page", cache.UserFilter{Query: "seven", Offset: 1, Limit: 1}, []string{"c@seven"}, 3},
		{"text ignores case, display name", cache.UserFilter{Query: "erin EX"}, []string{"e@seven"}, 1},
		{"text in email", cache.UserFilter{Query: "person@corp"}, []string{"f@local"}, 1},
		{"text and state", cache.UserFilter{Query: "seven", State: "active"}, []string{"a@seven", "e@seven"}, 2},
		{"text no match", cache.UserFilter{Query: "nobody"}, nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			page, total, err := s.ListUsers(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if got := names(page); !slices.Equal(got, tc.wantPage) || total != tc.wantTotal {
				t.Fatalf("got %v (total %d), want %v (total %d)", got, total, tc.wantPage, tc.wantTotal)
			}
		})
	}

	// Index follows state and role changes.
	if _, err := s.UpdateUser(ctx, ids["a@seven"], func(u *account.User) error {
		u.State, u.BlockReason = account.StateBlocked, account.ReasonAdmin
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if page, total, _ := s.ListUsers(ctx, cache.UserFilter{DirectoryID: 7, State: "blocked"}); total != 2 || page[0].Username != "a@seven" {
		t.Fatalf("after block: %v total %d", names(page), total)
	}

	counts, err := s.CountUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint64]map[account.State]int{
		0: {account.StateActive: 1, account.StateBlocked: 1},
		5: {account.StateActive: 1, account.StateBlockedInLDAP: 1},
		7: {account.StateActive: 1, account.StateBlocked: 2},
	}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Fatalf("CountUsers = %v, want %v", counts, want)
	}

	of7, err := s.UsersOfDirectory(ctx, 7)
	if err != nil || !slices.Equal(names(of7), []string{"a@seven", "c@seven", "e@seven"}) {
		t.Fatalf("UsersOfDirectory(7) = %v, %v", names(of7), err)
	}
	local, err := s.UsersOfDirectory(ctx, 0)
	if err != nil || !slices.Equal(names(local), []string{"root@local", "f@local"}) {
		t.Fatalf("UsersOfDirectory(0) = %v, %v", names(local), err)
	}

	var walked []string
	if err := s.ForEachUser(ctx, func(u account.User) error { walked = append(walked, u.Username); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(walked) != 7 || walked[0] != "root@local" || walked[6] != "f@local" {
		t.Fatalf("ForEachUser order: %v", walked)
	}
	stop := errors.New("stop")
	n := 0
	err = s.ForEachUser(ctx, func(account.User) error {
		if n++; n == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 3 {
		t.Fatalf("ForEachUser stop: %v after %d", err, n)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := s.ListUsers(cctx, cache.UserFilter{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("ListUsers with cancelled ctx: %v", err)
	}
}

func TestDeleteUserDeletesSessions(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	u := mustCreate(t, s, localUser("x@local", "user"))
	keep := mustCreate(t, s, localUser("y@local", "user"))
	exp := time.Now().Add(time.Hour)
	hs := [][32]byte{{1}, {2}, {3}}
	for i, h := range hs {
		owner := u.ID
		if i == 2 {
			owner = keep.ID
		}
		if err := s.PutSession(ctx, cache.Session{TokenHash: h, UserID: owner, ExpiresAt: exp}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteUser(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	for i, h := range hs {
		_, err := s.SessionByHash(ctx, h)
		if gone := errors.Is(err, cache.ErrNotFound); gone != (i < 2) {
			t.Errorf("session %d: err %v", i, err)
		}
	}
}

func TestMigrationInOneTx(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	const dir = 9
	for _, n := range []string{"ann@mail.example", "ben@mail.example"} {
		mustCreate(t, s, ldapUser(n, dir, n, "user"))
	}
	mustCreate(t, s, localUser("ben@example.com", "user")) // blocks the second migration
	migrate := func(newNames map[string]string) error {
		return s.Update(ctx, func(tx *Tx) error {
			for old, nw := range newNames {
				u, err := tx.UserByName(old)
				if err != nil {
					return err
				}
				u.Username = nw
				if err := tx.PutUser(&u); err != nil {
					return err
				}
			}
			return tx.SetNamingOverride(dir, "username_at_domain")
		})
	}
	err := migrate(map[string]string{"ann@mail.example": "ann@example.com", "ben@mail.example": "ben@example.com"})
	if !errors.Is(err, cache.ErrNameTaken) {
		t.Fatalf("migration with a taken name: %v", err)
	}
	if n, _ := s.NamingOverride(ctx, dir); n != "" {
		t.Fatalf("override after cancelled migration: %q", n)
	}
	if _, err := s.UserByName(ctx, "ann@mail.example"); err != nil {
		t.Fatalf("cancelled migration renamed ann: %v", err)
	}
	if err := s.DeleteUser(ctx, mustByName(t, s, "ben@example.com").ID); err != nil {
		t.Fatal(err)
	}
	if err := migrate(map[string]string{"ann@mail.example": "ann@example.com", "ben@mail.example": "ben@example.com"}); err != nil {
		t.Fatalf("migration: %v", err)
	}
	if n, _ := s.NamingOverride(ctx, dir); n != "username_at_domain" {
		t.Fatalf("override = %q", n)
	}
	for _, n := range []string{"ann@example.com", "ben@example.com"} {
		if u := mustByName(t, s, n); u.DirectoryID != dir {
			t.Fatalf("%s: %+v", n, u)
		}
	}
	if n, _ := s.NamingOverride(ctx, 10); n != "" {
		t.Fatalf("override of another directory: %q", n)
	}
	if err := s.SetNamingOverride(ctx, dir, ""); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.NamingOverride(ctx, dir); n != "" {
		t.Fatalf("override after removal: %q", n)
	}
}

func mustByName(t *testing.T, s *Store, name string) account.User {
	t.Helper()
	u, err := s.UserByName(context.Background(), name)
	if err != nil {
		t.Fatalf("UserByName(%q): %v", name, err)
	}
	return u
}

// Past pointLookupMax ids, listings walk the records instead of reading
// them one by one; both paths must give the same users in the same order.
func TestLargeListings(t *testing.T) {
	if testing.Short() {
		t.Skip("writes thousands of users")
	}
	ctx := context.Background()
	s := openTest(t, "")
	const n = pointLookupMax*2 + 300
	err := s.Update(ctx, func(tx *Tx) error {
		for i := 0; i < n; i++ {
			// Directories 1 and 2 interleaved; every fifth of dir 1 blocked.
			u := ldapUser(fmt.Sprintf("u%05d@x", i), uint64(1+i%2), fmt.Sprint(i), "user")
			if i%2 == 0 && i%5 == 0 {
				u.State = account.StateBlocked
			}
			if err := tx.PutUser(&u); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var want1 []string
	for i := 0; i < n; i += 2 {
		want1 = append(want1, fmt.Sprintf("u%05d@x", i))
	}
	names := func(us []account.User) []string {
		out := make([]string, 0, len(us))
		for _, u := range us {
			out = append(out, u.Username)
		}
		return out
	}
	got, err := s.UsersOfDirectory(ctx, 1)
	if err != nil || !slices.Equal(names(got), want1) {
		t.Fatalf("UsersOfDirectory(1): %d users, %v; want %d", len(got), err, len(want1))
	}
	page, total, err := s.ListUsers(ctx, cache.UserFilter{DirectoryID: 1, Limit: pointLookupMax + 10, Offset: 5})
	if err != nil || total != len(want1) || !slices.Equal(names(page), want1[5:5+pointLookupMax+10]) {
		t.Fatalf("ListUsers big page: %d of %d, %v", len(page), total, err)
	}
	// A text search past pointLookupMax candidates takes the walk path.
	page, total, err = s.ListUsers(ctx, cache.UserFilter{Query: "U0000", Limit: 3, Offset: 1})
	if err != nil || total != 10 || !slices.Equal(names(page), []string{"u00001@x", "u00002@x", "u00003@x"}) {
		t.Fatalf("ListUsers text: %v of %d, %v", names(page), total, err)
	}
	page, total, err = s.ListUsers(ctx, cache.UserFilter{State: "active"})
	wantActive := n - (n+9)/10
	if err != nil || total != wantActive || len(page) != wantActive || page[0].Username != "u00001@x" {
		t.Fatalf("ListUsers active: %d of %d (want %d), %v", len(page), total, wantActive, err)
	}
	for i := 1; i < len(page); i++ {
		if page[i].ID <= page[i-1].ID {
			t.Fatalf("listing not ordered by id at %d", i)
		}
	}
}

// A swap of two names in one transaction (through a temporary name, as the
// migration does) leaves each name pointing at the right user.
func TestRenameSwapInOneTx(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	a := mustCreate(t, s, localUser("a@x", "user"))
	b := mustCreate(t, s, localUser("b@x", "user"))
	s.UserByName(ctx, "a@x") // warm the cache
	err := s.Update(ctx, func(tx *Tx) error {
		for _, step := range []struct {
			id   uint64
			name string
		}{{a.ID, "tmp@x"}, {b.ID, "a@x"}, {a.ID, "b@x"}} {
			u, err := tx.UserByID(step.id)
			if err != nil {
				return err
			}
			u.Username = step.name
			if err := tx.PutUser(&u); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("swap: %v", err)
	}
	for name, want := range map[string]uint64{"a@x": b.ID, "b@x": a.ID} {
		if got := mustByName(t, s, name); got.ID != want {
			t.Errorf("%s → user %d, want %d", name, got.ID, want)
		}
	}
	if _, err := s.UserByName(ctx, "tmp@x"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("temporary name left behind: %v", err)
	}
}

// Inside one transaction a user read back after PutUser (served from the
// transaction's last-user memo) is what a fresh decode of the stored
// record gives, and a deleted user is gone.
func TestTxUserReadBackMatchesStore(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	u := mustCreate(t, s, ldapUser("memo@example.com", 1, "uuid-memo", "user"))
	var inTx account.User
	if err := s.Update(ctx, func(tx *Tx) error {
		cur, err := tx.UserByID(u.ID)
		if err != nil {
			return err
		}
		cur.Role, cur.Groups = "admin", nil
		if err := tx.PutUser(&cur); err != nil {
			return err
		}
		cur.Email = "changed-after-put@example.com" // the caller's copy, not the store's
		if inTx, err = tx.UserByID(u.ID); err != nil {
			return err
		}
		other := mustCreateTx(t, tx, ldapUser("other@example.com", 1, "uuid-other", "user"))
		if err := tx.DeleteUser(other.ID); err != nil {
			return err
		}
		if _, err := tx.UserByID(other.ID); !errors.Is(err, cache.ErrNotFound) {
			t.Errorf("a user deleted in the transaction reads back: %v", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	stored, err := s.UserByID(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(inTx, stored) {
		t.Errorf("read back in the transaction:\n %#v\nstored:\n %#v", inTx, stored)
	}
}

func mustCreateTx(t *testing.T, tx *Tx, u account.User) account.User {
	t.Helper()
	if err := tx.PutUser(&u); err != nil {
		t.Fatal(err)
	}
	return u
}
