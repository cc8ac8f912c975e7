// Package storetest is the one conformance suite of the store contract
// (cache.Backend): every backend's tests call Run, so a rule that holds on
// badger holds on PostgreSQL (the oauth2-proxy pattern of one table of
// session-store tests run against every store).
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/config"
)

// Open returns a new, empty store for one test (closed by the test's
// cleanup).
type Open func(t *testing.T) cache.Backend

// Run runs every behaviour of the contract against stores made by open.
func Run(t *testing.T, open Open) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s cache.Backend)
	}{
		{"UsersAndIndexes", testUsersAndIndexes},
		{"NameAndUUIDRules", testUniqueness},
		{"LDAPStatusOnlyWhenBlockedInLDAP", testLDAPStatus},
		{"UpdateAllOrNothing", testAllOrNothing},
		{"UpdateRerun", testRerun},
		{"ConcurrentUpdatesLoseNothing", testConcurrentUpdates},
		{"ListUsers", testListUsers},
		{"RunsAndAudit", testRunsAndAudit},
		{"OldRunsPruned", testRunsPruned},
		{"Sessions", testSessions},
		{"SessionsEndWithPasswordAndUser", testSessionsEnd},
		{"LocalUsersPrune", testPruneLocal},
		{"Directories", testDirectories},
		{"LiveCookies", testLiveCookies},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

func ldapUser(name string, dir uint64, uuid string) account.User {
	return account.User{Username: name, Email: name + "@example.com", DisplayName: "User " + name, Role: "user",
		State: account.StateActive, Source: account.SourceLDAP, DirectoryID: dir, LDAPUUID: uuid,
		LDAPDN: "uid=" + name + ",dc=example,dc=com", Groups: []string{"staff"}}
}

func mustCreate(t *testing.T, s cache.Backend, u account.User) account.User {
	t.Helper()
	out, err := s.CreateUser(context.Background(), u)
	if err != nil {
		t.Fatalf("CreateUser(%s): %v", u.Username, err)
	}
	return out
}

func testUsersAndIndexes(t *testing.T, s cache.Backend) {
	ctx := context.Background()
	a := mustCreate(t, s, ldapUser(" Alice ", 1, "u-a"))
	if a.ID == 0 || a.Username != "alice" || a.CreatedAt.IsZero() || a.UpdatedAt.IsZero() {
		t.Fatalf("created %+v: want an id, the normalised name and timestamps", a)
	}
	for name, get := range map[string]func() (account.User, error){
		"id":   func() (account.User, error) { return s.UserByID(ctx, a.ID) },
		"name": func() (account.User, error) { return s.UserByName(ctx, "ALICE") },
		"uuid": func() (account.User, error) { return s.UserByUUID(ctx, 1, "u-a") },
	} {
		got, err := get()
		if err != nil {
			t.Fatalf("by %s: %v", name, err)
		}
		if !equalUser(got, a) {
			t.Errorf("by %s: %+v, want %+v", name, got, a)
		}
	}
	if _, err := s.UserByUUID(ctx, 2, "u-a"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("uuid of another directory: %v, want ErrNotFound", err)
	}
	// A rename moves the name index: the old name is free.
	r, err := s.UpdateUser(ctx, a.ID, func(u *account.User) error { u.Username = "Alicia"; u.LDAPUUID = "u-a2"; return nil })
	if err != nil || r.Username != "alicia" || !r.CreatedAt.Equal(a.CreatedAt) {
		t.Fatalf("rename: %+v %v", r, err)
	}
	if _, err := s.UserByName(ctx, "alice"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("old name after rename: %v, want ErrNotFound", err)
	}
	if _, err := s.UserByUUID(ctx, 1, "u-a"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("old uuid after change: %v, want ErrNotFound", err)
	}
	if got, err := s.UserByUUID(ctx, 1, "u-a2"); err != nil || got.ID != a.ID {
		t.Errorf("new uuid: %+v %v", got, err)
	}
	mustCreate(t, s, ldapUser("alice", 1, "u-a")) // both freed
	if err := s.DeleteUser(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UserByID(ctx, a.ID); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("deleted user by id: %v", err)
	}
	if _, err := s.UserByName(ctx, "alicia"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("deleted user by name: %v", err)
	}
	if err := s.DeleteUser(ctx, a.ID); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("delete twice: %v, want ErrNotFound", err)
	}
	if _, err := s.UpdateUser(ctx, a.ID, func(*account.User) error { return nil }); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("update of a deleted user: %v, want ErrNotFound", err)
	}
	// A new user never reuses an id.
	if b := mustCreate(t, s, ldapUser("bob", 1, "u-b")); b.ID == a.ID {
		t.Errorf("id %d reused", b.ID)
	}
}

// equalUser compares what a store hands back (times to the microsecond:
// PostgreSQL's precision).
func equalUser(a, b account.User) bool {
	eq := func(x, y time.Time) bool { return x.Truncate(time.Microsecond).Equal(y.Truncate(time.Microsecond)) }
	if !eq(a.CreatedAt, b.CreatedAt) || !eq(a.UpdatedAt, b.UpdatedAt) || !eq(a.LastLoginAt, b.LastLoginAt) ||
		!eq(a.LastSyncedAt, b.LastSyncedAt) {
		return false
	}
	a.CreatedAt, a.UpdatedAt, a.LastLoginAt, a.LastSyncedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	b.CreatedAt, b.UpdatedAt, b.LastLoginAt, b.LastSyncedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	return fmt.Sprintf("%+v", a) == fmt.Sprintf("%+v", b)
}

func testUniqueness(t *testing.T, s cache.Backend) {
	ctx := context.Background()
	a := mustCreate(t, s, ldapUser("alice", 1, "u-a"))
	b := mustCreate(t, s, ldapUser("bob", 1, "u-b"))
	mustCreate(t, s, ldapUser("alice2", 2, "u-a")) // the same uuid in another directory
	mustCreate(t, s, account.User{Username: "carol@local", State: account.StateActive, Source: account.SourceLocal, Role: "user"})
	mustCreate(t, s, account.User{Username: "dave@local", State: account.StateActive, Source: account.SourceLocal, Role: "user"}) // two without uuid
	for _, tc := range []struct {
		name string
		do   func() error
		want error
	}{
		{"create a taken name", func() error { _, err := s.CreateUser(ctx, ldapUser("ALICE", 3, "x")); return err }, cache.ErrNameTaken},
		{"create a taken uuid", func() error { _, err := s.CreateUser(ctx, ldapUser("zed", 1, "u-a")); return err }, cache.ErrUUIDTaken},
		{"rename into a taken name", func() error {
			_, err := s.UpdateUser(ctx, b.ID, func(u *account.User) error { u.Username = "alice"; return nil })
			return err
		}, cache.ErrNameTaken},
		{"take a taken uuid", func() error {
			_, err := s.UpdateUser(ctx, b.ID, func(u *account.User) error { u.LDAPUUID = "u-a"; return nil })
			return err
		}, cache.ErrUUIDTaken},
		{"move into a directory whose user has the uuid", func() error {
			_, err := s.UpdateUser(ctx, a.ID, func(u *account.User) error { u.DirectoryID = 2; return nil })
			return err
		}, cache.ErrUUIDTaken},
	} {
		if err := tc.do(); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// The refused writes changed nothing.
	if got, _ := s.UserByID(ctx, b.ID); got.Username != "bob" || got.LDAPUUID != "u-b" {
		t.Errorf("bob after refused writes: %+v", got)
	}
	if got, _ := s.UserByUUID(ctx, 1, "u-a"); got.ID != a.ID {
		t.Errorf("uuid u-a now names %d, want %d", got.ID, a.ID)
	}
	// A swap of names inside one transaction, in an order that frees each
	// name before it is taken, commits.
	err := s.Update(ctx, func(tx cache.Txn) error {
		ua, err := tx.UserByID(a.ID)
		if err != nil {
			return err
		}
		ub, err := tx.UserByID(b.ID)
		if err != nil {
			return err
		}
		ua.Username = "tmp"
		if err := tx.PutUser(&ua); err != nil {
			return err
		}
		ub.Username = "alice"
		if err := tx.PutUser(&ub); err != nil {
			return err
		}
		ua.Username = "bob"
		return tx.PutUser(&ua)
	})
	if err != nil {
		t.Fatalf("swap: %v", err)
	}
	if got, _ := s.UserByName(ctx, "alice"); got.ID != b.ID {
		t.Errorf("after swap alice is %d, want %d", got.ID, b.ID)
	}
	if _, err := s.UserByName(ctx, "tmp"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("tmp after swap: %v", err)
	}
}

func testLDAPStatus(t *testing.T, s cache.Backend) {
	ctx := context.Background()
	u := ldapUser("eve", 1, "u-e")
	u.State, u.LDAPStatus = account.StateBlockedInLDAP, account.LDAPStatusExpired
	u = mustCreate(t, s, u)
	if got, _ := s.UserByID(ctx, u.ID); got.LDAPStatus != account.LDAPStatusExpired {
		t.Fatalf("ldap_status %q, want expired", got.LDAPStatus)
	}
	got, err := s.UpdateUser(ctx, u.ID, func(u *account.User) error { u.State = account.StateBlocked; return nil })
	if err != nil || got.LDAPStatus != account.LDAPStatusNone {
		t.Fatalf("admin block: ldap_status %q %v, want cleared", got.LDAPStatus, err)
	}
}

func testAllOrNothing(t *testing.T, s cache.Backend) {
	ctx := context.Background()
	run, err := s.CreateRun(ctx, cache.Run{DirectoryID: 1, Directory: "d", Trigger: "api"})
	if err != nil {
		t.Fatal(err)
	}
	keep := mustCreate(t, s, ldapUser("keep", 1, "u-k"))
	boom := errors.New("boom")
	err = s.Update(ctx, func(tx cache.Txn) error {
		for _, n := range []string{"x1", "x2"} {
			u := ldapUser(n, 1, "u-"+n)
			if err := tx.PutUser(&u); err != nil {
				return err
			}
			if err := tx.AddAudit(run.ID, cache.AuditEntry{Action: "create", UserID: u.ID, Username: n}); err != nil {
				return err
			}
		}
		k, err := tx.UserByID(keep.ID)
		if err != nil {
			return err
		}
		k.Role = "admin"
		if err := tx.PutUser(&k); err != nil {
			return err
		}
		if err := tx.SetNamingOverride(1, "uid"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update: %v, want fn's error", err)
	}
	for _, n := range []string{"x1", "x2"} {
		if _, err := s.UserByName(ctx, n); !errors.Is(err, cache.ErrNotFound) {
			t.Errorf("%s after a failed update: %v", n, err)
		}
	}
	if k, _ := s.UserByID(ctx, keep.ID); k.Role != "user" {
		t.Errorf("keep's role %q after a failed update", k.Role)
	}
	if es, _ := s.RunChanges(ctx, run.ID); len(es) != 0 {
		t.Errorf("audit after a failed update: %+v", es)
	}
	if n, _ := s.NamingOverride(ctx, 1); n != "" {
		t.Errorf("naming %q after a failed update", n)
	}
	// A refused PutUser inside fn, returned, leaves nothing either.
	err = s.Update(ctx, func(tx cache.Txn) error {
		u := ldapUser("y1", 1, "u-y1")
		if err := tx.PutUser(&u); err != nil {
			return err
		}
		dup := ldapUser("keep", 1, "u-y2")
		return tx.PutUser(&dup)
	})
	if !errors.Is(err, cache.ErrNameTaken) {
		t.Fatalf("Update with a taken name: %v", err)
	}
	if _, err := s.UserByName(ctx, "y1"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("y1 after the batch was refused: %v", err)
	}
}

func testRerun(t *testing.T, s cache.Backend) {
	ctx := context.Background()
	mustCreate(t, s, ldapUser("taken", 1, "u-t"))
	// The syncer's pattern: a name conflict drops that change and the
	// batch runs again without it (cache.ErrRerun).
	names := []string{"r1", "taken", "r2"}
	calls := 0
	err := s.Update(ctx, func(tx cache.Txn) error {
		calls++
		for i, n := range names {
			u := ldapUser(n, 1, "u-"+n+"-new")
			if err := tx.PutUser(&u); err != nil {
				if errors.Is(err, cache.ErrNameTaken) {
					names = slices.Delete(names, i, i+1)
					return fmt.Errorf("%w: %w", cache.ErrRerun, err)
				}
				return err
			}
		}
		return nil
	})
	if err != nil || calls < 2 {
		t.Fatalf("Update: %v after %d calls, want success after a rerun", err, calls)
	}
	for _, n := range []string{"r1", "r2"} {
		if _, err := s.UserByName(ctx, n); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
	if u, _ := s.UserByName(ctx, "taken"); u.LDAPUUID != "u-t" {
		t.Errorf("taken was overwritten: %+v", u)
	}
}

func testConcurrentUpdates(t *testing.T, s cache.Backend) {
	ctx := context.Background()
	u := mustCreate(t, s, ldapUser("shared", 1, "u-s"))
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.UpdateUser(ctx, u.ID, func(x *account.User) error {
				x.Groups = append(slices.Clone(x.Groups), fmt.Sprintf("g%d", i))
				return nil
			})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, _ := s.UserByID(ctx, u.ID)
	if len(got.Groups) != n+1 {
		t.Errorf("groups %v: an update was lost (read-modify-write must rerun on conflict)", got.Groups)
	}
	// Two creates of one name racing: exactly one wins, the other is told.
	var won, taken int
	var mu sync.Mutex
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.CreateUser(ctx, ldapUser("race", 1, ""))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case errors.Is(err, cache.ErrNameTaken):
				taken++
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if won != 1 || taken != n-1 {
		t.Errorf("racing creates: %d won, %d told the name is taken; want 1 and %d", won, taken, n-1)
	}
}

func testListUsers(t *testing.T, s cache.Backend) {
	ctx := context.Background()
	var ids []uint64
	for i := range 5 {
		u := ldapUser(fmt.Sprintf("user%d", i), uint64(1+i%2), fmt.Sprintf("u%d", i))
		if i == 3 {
			u.State, u.Role, u.DisplayName = account.StateBlocked, "admin", "Percent 100%_x"
		}
		ids = append(ids, mustCreate(t, s, u).ID)
	}
	local := mustCreate(t, s, account.User{Username: "root@local", State: account.StateActive, Source: account.SourceLocal, Role: "admin"})
	for _, tc := range []struct {
		name  string
		f     cache.UserFilter
		want  []uint64
		total int
	}{
		{"all", cache.UserFilter{}, append(slices.Clone(ids), local.ID), 6},
		{"directory 2", cache.UserFilter{DirectoryID: 2}, []uint64{ids[1], ids[3]}, 2},
		{"blocked", cache.UserFilter{State: "blocked"}, []uint64{ids[3]}, 1},
		{"admins", cache.UserFilter{Role: "admin"}, []uint64{ids[3], local.ID}, 2},
		{"local", cache.UserFilter{Source: "local"}, []uint64{local.ID}, 1},
		{"page", cache.UserFilter{Limit: 2, Offset: 1}, []uint64{ids[1], ids[2]}, 6},
		{"past the end", cache.UserFilter{Offset: 10}, nil, 6},
		{"query in email, any case", cache.UserFilter{Query: "USER2@"}, []uint64{ids[2]}, 1},
		{"query is literal", cache.UserFilter{Query: "100%_"}, []uint64{ids[3]}, 1},
		{"query no match", cache.UserFilter{Query: "%"}, []uint64{ids[3]}, 1},
	} {
		page, total, err := s.ListUsers(ctx, tc.f)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var got []uint64
		for _, u := range page {
			got = append(got, u.ID)
		}
		if !slices.Equal(got, tc.want) || total != tc.total {
			t.Errorf("%s: %v of %d, want %v of %d", tc.name, got, total, tc.want, tc.total)
		}
	}
	// The streamed listing answers as ListUsers does.
	l, err := s.OpenUserList(ctx, cache.UserFilter{Limit: 2, Offset: 1})
	if err != nil {
		t.Fatal(err)
	}
	var streamed []uint64
	err = l.Each(ctx, func(u *account.User) error { streamed = append(streamed, u.ID); return nil })
	l.Close()
	l.Close()
	if err != nil || l.Len() != 2 || l.Total() != 6 || !slices.Equal(streamed, []uint64{ids[1], ids[2]}) {
		t.Errorf("OpenUserList: len %d total %d users %v %v", l.Len(), l.Total(), streamed, err)
	}
	of1, err := s.UsersOfDirectory(ctx, 1)
	if err != nil || len(of1) != 3 || of1[0].ID != ids[0] {
		t.Errorf("UsersOfDirectory(1): %d users %v", len(of1), err)
	}
	locals, _ := s.UsersOfDirectory(ctx, 0)
	if len(locals) != 1 || locals[0].ID != local.ID {
		t.Errorf("UsersOfDirectory(0): %+v", locals)
	}
	counts, err := s.CountUsers(ctx)
	if err != nil || counts[1][account.StateActive] != 3 || counts[2][account.StateActive] != 1 ||
		counts[2][account.StateBlocked] != 1 || counts[0][account.StateActive] != 1 {
		t.Errorf("CountUsers: %v %v", counts, err)
	}
	var walked []uint64
	if err := s.ForEachUser(ctx, func(u account.User) error { walked = append(walked, u.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(walked, append(slices.Clone(ids), local.ID)) {
		t.Errorf("ForEachUser: %v", walked)
	}
	stop := errors.New("stop")
	if err := s.ForEachUser(ctx, func(account.User) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("ForEachUser's stop: %v", err)
	}
}

func testRunsAndAudit(t *testing.T, s cache.Backend) {
	ctx := context.Background()
	r1, err := s.CreateRun(ctx, cache.Run{DirectoryID: 1, Directory: "one", Trigger: "schedule"})
	if err != nil || r1.ID == 0 || r1.Result != cache.RunRunning || r1.StartedAt.IsZero() {
		t.Fatalf("CreateRun: %+v %v", r1, err)
	}
	r2, _ := s.CreateRun(ctx, cache.Run{DirectoryID: 2, Directory: "two", Trigger: "api"})
	r3, _ := s.CreateRun(ctx, cache.Run{DirectoryID: 1, Directory: "one", Trigger: "api"})
	// Audit seqs continue across transactions, in call order.
	for batch := range 3 {
		err := s.Update(ctx, func(tx cache.Txn) error {
			for i := range 300 { // past one badger audit chunk
				if err := tx.AddAudit(r1.ID, cache.AuditEntry{Action: "create", UserID: uint64(batch*1000 + i),
					Username: fmt.Sprintf("u%d-%d", batch, i), Fields: map[string][2]string{"email": {"", "x"}}}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	es, err := s.RunChanges(ctx, r1.ID)
	if err != nil || len(es) != 900 {
		t.Fatalf("RunChanges: %d %v", len(es), err)
	}
	for i, e := range es {
		if e.Seq != uint64(i+1) || e.At.IsZero() {
			t.Fatalf("entry %d: seq %d at %v", i, e.Seq, e.At)
		}
	}
	if es[899].Username != "u2-299" || es[0].Fields["email"] != [2]string{"", "x"} {
		t.Errorf("entries out of order or lost fields: %+v %+v", es[0], es[899])
	}
	if es, err := s.RunChanges(ctx, r2.ID); err != nil || len(es) != 0 || es == nil {
		t.Errorf("RunChanges of a run without changes: %v %v (want an empty list)", es, err)
	}
	if _, err := s.RunChanges(ctx, 99999); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("RunChanges of no run: %v", err)
	}
	r1.Result, r1.Counts, r1.DirectoryUsers = cache.RunSuccess, map[string]int{"create": 900}, 900
	if err := s.FinishRun(ctx, r1); err != nil {
		t.Fatal(err)
	}
	got, err := s.Run(ctx, r1.ID)
	if err != nil || got.Result != cache.RunSuccess || got.Counts["create"] != 900 || got.FinishedAt.IsZero() {
		t.Errorf("Run: %+v %v", got, err)
	}
	wrong := r2
	wrong.DirectoryID = 1
	if err := s.FinishRun(ctx, wrong); err == nil {
		t.Error("FinishRun of another directory's run: nil error")
	}
	if err := s.FinishRun(ctx, cache.Run{ID: 99999, DirectoryID: 1}); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("FinishRun of no run: %v", err)
	}
	if _, err := s.Run(ctx, 99999); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("Run of no run: %v", err)
	}
	ids := func(rs []cache.Run) (out []uint64) {
		for _, r := range rs {
			out = append(out, r.ID)
		}
		return out
	}
	if rs, _ := s.Runs(ctx, 1, 0); !slices.Equal(ids(rs), []uint64{r3.ID, r1.ID}) {
		t.Errorf("Runs(1): %v", ids(rs))
	}
	if rs, _ := s.Runs(ctx, 0, 2); !slices.Equal(ids(rs), []uint64{r3.ID, r2.ID}) {
		t.Errorf("Runs(all, 2): %v", ids(rs))
	}
}

func testSessions(t *testing.T, s cache.Backend) {
	ctx := context.Background()
	u := mustCreate(t, s, ldapUser("sam", 1, "u-s"))
	now := time.Now().UTC()
	mk := func(i byte, age time.Duration) cache.Session {
		return cache.Session{TokenHash: [32]byte{i}, UserID: u.ID, CreatedAt: now.Add(-age), ExpiresAt: now.Add(time.Hour), LastSeen: now}
	}
	for i, age := range []time.Duration{3 * time.Minute, 2 * time.Minute} {
		if ended, err := s.CreateSession(ctx, mk(byte(i+1), age), 2, nil); err != nil || len(ended) != 0 {
			t.Fatalf("CreateSession %d: %v %v", i, ended, err)
		}
	}
	// The cap ends the oldest.
	ended, err := s.CreateSession(ctx, mk(3, time.Minute), 2, nil)
	if err != nil || len(ended) != 1 || ended[0] != [32]byte{1} {
		t.Fatalf("CreateSession over the cap: ended %v %v, want the oldest", ended, err)
	}
	if _, err := s.SessionByHash(ctx, [32]byte{1}); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("the ended session: %v", err)
	}
	got, err := s.SessionByHash(ctx, [32]byte{3})
	if err != nil || got.UserID != u.ID || !got.ExpiresAt.Truncate(time.Second).Equal(now.Add(time.Hour).Truncate(time.Second)) {
		t.Fatalf("SessionByHash: %+v %v", got, err)
	}
	if n, _ := s.CountSessions(ctx); n != 2 {
		t.Errorf("CountSessions: %d, want 2", n)
	}
	// check refuses inside the transaction: no session.
	refused := errors.New("blocked")
	if _, err := s.CreateSession(ctx, mk(4, 0), 0, func(account.User) error { return refused }); !errors.Is(err, refused) {
		t.Errorf("CreateSession with a refusing check: %v", err)
	}
	if _, err := s.SessionByHash(ctx, [32]byte{4}); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("session the check refused: %v", err)
	}
	// An expired session is not found, and an expired one is not stored.
	other := mustCreate(t, s, ldapUser("shorty", 1, "u-short"))
	short := mk(5, 0)
	short.UserID = other.ID
	short.ExpiresAt = time.Now().Add(300 * time.Millisecond)
	if err := s.PutSession(ctx, short); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := s.SessionByHash(ctx, [32]byte{5})
		if errors.Is(err, cache.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("an expired session is still found: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	past := mk(6, 0)
	past.ExpiresAt = now.Add(-time.Second)
	if err := s.PutSession(ctx, past); err == nil {
		t.Error("PutSession of an expired session: nil error")
	}
	if err := s.DeleteSession(ctx, [32]byte{3}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSession(ctx, [32]byte{3}); err != nil {
		t.Errorf("delete twice: %v", err)
	}
	if _, err := s.SessionByHash(ctx, [32]byte{3}); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("deleted session: %v", err)
	}
	if n, err := s.DeleteUserSessions(ctx, u.ID); err != nil || n != 1 {
		t.Errorf("DeleteUserSessions: %d %v, want 1", n, err)
	}
	if _, err := s.SessionByHash(ctx, [32]byte{2}); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("session after DeleteUserSessions: %v", err)
	}
}

func testSessionsEnd(t *testing.T, s cache.Backend) {
	ctx := context.Background()
	u := mustCreate(t, s, account.User{Username: "pw@local", State: account.StateActive, Source: account.SourceLocal, Role: "user", PasswordHash: "h1"})
	v := mustCreate(t, s, ldapUser("victor", 1, "u-v"))
	now := time.Now().UTC()
	for i, id := range []uint64{u.ID, v.ID} {
		if _, err := s.CreateSession(ctx, cache.Session{TokenHash: [32]byte{byte(i + 1)}, UserID: id, CreatedAt: now, ExpiresAt: now.Add(time.Hour), LastSeen: now}, 0, nil); err != nil {
			t.Fatal(err)
		}
	}
	// A change that keeps the password keeps the session.
	if _, err := s.UpdateUser(ctx, u.ID, func(x *account.User) error { x.Email = "new@example.com"; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SessionByHash(ctx, [32]byte{1}); err != nil {
		t.Fatalf("session after an email change: %v", err)
	}
	if _, err := s.UpdateUser(ctx, u.ID, func(x *account.User) error { x.PasswordHash = "h2"; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SessionByHash(ctx, [32]byte{1}); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("session after a password change: %v (SPEC §5)", err)
	}
	if err := s.DeleteUser(ctx, v.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SessionByHash(ctx, [32]byte{2}); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("session of a deleted user: %v", err)
	}
	// Blocking through a transaction ends sessions in the same commit.
	w := mustCreate(t, s, ldapUser("wendy", 1, "u-w"))
	if _, err := s.CreateSession(ctx, cache.Session{TokenHash: [32]byte{9}, UserID: w.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour), LastSeen: now}, 0, nil); err != nil {
		t.Fatal(err)
	}
	err := s.Update(ctx, func(tx cache.Txn) error {
		x, err := tx.UserByID(w.ID)
		if err != nil {
			return err
		}
		x.State = account.StateBlocked
		if err := tx.PutUser(&x); err != nil {
			return err
		}
		n, err := tx.DeleteUserSessions(w.ID)
		if err == nil && n != 1 {
			err = fmt.Errorf("ended %d sessions, want 1", n)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SessionByHash(ctx, [32]byte{9}); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("session of a blocked user: %v", err)
	}
}

func testPruneLocal(t *testing.T, s cache.Backend) {
	ctx := context.Background()
	local := func(n string) account.User {
		return account.User{Username: n, State: account.StateActive, Source: account.SourceLocal, Role: "user"}
	}
	a := mustCreate(t, s, local("a@local"))
	mustCreate(t, s, local("b@local"))
	if del, err := s.PruneConfigLocalUsers(ctx, []string{"A@local", "b@local"}); err != nil || len(del) != 0 {
		t.Fatalf("first prune: %v %v", del, err)
	}
	// b leaves the file: it goes; a stays.
	if del, err := s.PruneConfigLocalUsers(ctx, []string{"a@local"}); err != nil || !slices.Equal(del, []string{"b@local"}) {
		t.Fatalf("prune: %v %v, want [b@local]", del, err)
	}
	if _, err := s.UserByID(ctx, a.ID); err != nil {
		t.Errorf("a after prune: %v", err)
	}
	if _, err := s.UserByName(ctx, "b@local"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("b after prune: %v", err)
	}
	// A name that left the file but now names an LDAP user is not touched.
	mustCreate(t, s, ldapUser("c", 1, "u-c"))
	if _, err := s.PruneConfigLocalUsers(ctx, []string{"a@local", "c"}); err != nil {
		t.Fatal(err)
	}
	if del, err := s.PruneConfigLocalUsers(ctx, nil); err != nil || !slices.Equal(del, []string{"a@local"}) {
		t.Errorf("prune all: %v %v, want [a@local] only", del, err)
	}
	if _, err := s.UserByName(ctx, "c"); err != nil {
		t.Errorf("ldap user c after prune: %v", err)
	}
}

func testDirectories(t *testing.T, s cache.Backend) {
	ctx := context.Background()
	id1, err := s.DirectoryIDForName(ctx, "Corp")
	if err != nil || id1 == 0 {
		t.Fatalf("DirectoryIDForName: %d %v", id1, err)
	}
	if again, _ := s.DirectoryIDForName(ctx, " corp "); again != id1 {
		t.Errorf("the same name got %d then %d", id1, again)
	}
	id2, _ := s.DirectoryIDForName(ctx, "other")
	d, err := s.SaveDirectory(ctx, config.Directory{Name: "api-dir", Type: "ldap", URLs: []string{"ldap://127.0.0.1:1"},
		BindDN: "cn=admin", BindPassword: config.Secret("s3cret")})
	if err != nil || d.ID == 0 || d.Managed != "api" {
		t.Fatalf("SaveDirectory: %+v %v", d, err)
	}
	if len(map[uint64]bool{id1: true, id2: true, d.ID: true}) != 3 {
		t.Errorf("ids %d %d %d: config and API directories share one id space", id1, id2, d.ID)
	}
	d.URLs = []string{"ldap://127.0.0.1:2"}
	if _, err := s.SaveDirectory(ctx, d); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SaveDirectory(ctx, config.Directory{ID: 99999, Name: "ghost"}); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("replace of an unknown directory: %v", err)
	}
	ds, err := s.Directories(ctx)
	if err != nil || len(ds) != 1 || ds[0].URLs[0] != "ldap://127.0.0.1:2" || ds[0].BindPassword.Reveal() != "s3cret" {
		t.Fatalf("Directories: %+v %v", ds, err)
	}
	if err := s.SetNamingOverride(ctx, d.ID, "uid"); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.NamingOverride(ctx, d.ID); n != "uid" {
		t.Errorf("naming %q", n)
	}
	if err := s.SetNamingOverride(ctx, d.ID, ""); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.NamingOverride(ctx, d.ID); n != "" {
		t.Errorf("cleared naming %q", n)
	}
	_ = s.SetNamingOverride(ctx, d.ID, "mail")
	if err := s.DeleteDirectory(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.NamingOverride(ctx, d.ID); n != "" {
		t.Errorf("naming of a deleted directory: %q", n)
	}
	if err := s.DeleteDirectory(ctx, d.ID); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("delete twice: %v", err)
	}
	if ds, _ := s.Directories(ctx); len(ds) != 0 {
		t.Errorf("Directories after delete: %+v", ds)
	}
}

// keepRuns is how many runs of a directory both stores keep.
const keepRuns = 1000

func testRunsPruned(t *testing.T, s cache.Backend) {
	ctx := context.Background()
	first, err := s.CreateRun(ctx, cache.Run{DirectoryID: 5, Directory: "five", Trigger: "api"})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(ctx, func(tx cache.Txn) error {
		return tx.AddAudit(first.ID, cache.AuditEntry{Action: "create", Username: "x"})
	})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := s.CreateRun(ctx, cache.Run{DirectoryID: 6, Directory: "six", Trigger: "api"})
	for range keepRuns {
		if _, err := s.CreateRun(ctx, cache.Run{DirectoryID: 5, Directory: "five", Trigger: "schedule"}); err != nil {
			t.Fatal(err)
		}
	}
	runs, err := s.Runs(ctx, 5, 0)
	if err != nil || len(runs) != keepRuns {
		t.Fatalf("runs kept: %d %v, want %d", len(runs), err, keepRuns)
	}
	if _, err := s.RunChanges(ctx, first.ID); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("the pruned run's changes: %v, want ErrNotFound", err)
	}
	if _, err := s.Run(ctx, other.ID); err != nil {
		t.Errorf("another directory's run was pruned: %v", err)
	}
}

func testLiveCookies(t *testing.T, s cache.Backend) {
	ctx := context.Background()
	if c, err := s.LiveCookie(ctx, 3); err != nil || c != nil {
		t.Fatalf("no cookie yet: %q %v", c, err)
	}
	for _, want := range [][]byte{[]byte("rid=001,csn=1\x00"), []byte("second")} {
		if err := s.SetLiveCookie(ctx, 3, want); err != nil {
			t.Fatal(err)
		}
		if c, err := s.LiveCookie(ctx, 3); err != nil || string(c) != string(want) {
			t.Fatalf("cookie %q %v, want %q", c, err, want)
		}
	}
	if c, _ := s.LiveCookie(ctx, 4); c != nil {
		t.Errorf("another directory's cookie: %q", c)
	}
	if err := s.SetLiveCookie(ctx, 3, nil); err != nil {
		t.Fatal(err)
	}
	if c, err := s.LiveCookie(ctx, 3); err != nil || c != nil {
		t.Errorf("removed cookie: %q %v", c, err)
	}
}
