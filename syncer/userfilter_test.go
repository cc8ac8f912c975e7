package syncer

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/directory"
	"github.com/ldapgate/ldapgate/internal/ldaptest"
)

func outOfScope(u directory.User) directory.User { u.OutOfScope = true; return u }

// TestPlanUserFilter: SPEC §4 rule 7 for user_filter. An entry the filter
// excludes is read with OutOfScope, so its store user is blocked
// out_of_scope (not deleted_in_ldap), unblocked when the filter admits it
// again, and never created while outside it.
func TestPlanUserFilter(t *testing.T) {
	staff := func(members ...string) []directory.Group { return []directory.Group{grp(staffDN, members...)} }
	tests := []struct {
		name    string
		snap    Snapshot
		current []account.User
		partial bool
		want    []want
		users   int // Plan.DirectoryUsers
	}{
		{
			name:    "existing user leaves the filter: blocked out_of_scope",
			snap:    Snapshot{Users: []directory.User{du("alice"), outOfScope(du("bob"))}, Groups: staff("alice", "bob")},
			current: []account.User{stored(1, "alice", "user", "staff"), stored(2, "bob", "user", "staff")},
			want: []want{
				{ActionUnchanged, "", "alice@example.com", "user", active},
				{ActionBlock, string(account.ReasonOutOfScope), "bob@example.com", "user", blk},
			},
			users: 1,
		},
		{
			name: "comes back into the filter: unblocked",
			snap: Snapshot{Users: []directory.User{du("alice"), du("bob")}, Groups: staff("alice", "bob")},
			current: []account.User{stored(1, "alice", "user", "staff"),
				with(stored(2, "bob", "user", "staff"), blocked(account.ReasonOutOfScope))},
			want: []want{
				{ActionUnchanged, "", "alice@example.com", "user", active},
				{ActionUnblock, string(account.ReasonOutOfScope), "bob@example.com", "user", active},
			},
			users: 2,
		},
		{
			name:  "new user outside the filter: skipped, not created",
			snap:  Snapshot{Users: []directory.User{du("alice"), outOfScope(du("carol"))}, Groups: staff("alice", "carol")},
			want:  []want{{ActionCreate, "", "alice@example.com", "user", active}, {ActionSkip, SkipUserFilter, "carol@example.com", "", ""}},
			users: 1,
		},
		{
			name:    "still outside: already blocked out_of_scope, nothing written",
			snap:    Snapshot{Users: []directory.User{du("alice"), outOfScope(du("bob"))}, Groups: staff("alice", "bob")},
			current: []account.User{stored(1, "alice", "user", "staff"), with(stored(2, "bob", "user", "staff"), blocked(account.ReasonOutOfScope))},
			want: []want{
				{ActionUnchanged, "", "alice@example.com", "user", active},
				{ActionSkip, SkipUserFilter, "bob@example.com", "", ""},
			},
			users: 1,
		},
		{
			name:    "a deleted_in_ldap user reappearing outside the filter becomes out_of_scope",
			snap:    Snapshot{Users: []directory.User{du("alice"), outOfScope(du("bob"))}, Groups: staff("alice", "bob")},
			current: []account.User{stored(1, "alice", "user", "staff"), with(stored(2, "bob", "user", "staff"), blocked(account.ReasonDeletedInLDAP))},
			want: []want{
				{ActionUnchanged, "", "alice@example.com", "user", active},
				{ActionBlock, string(account.ReasonOutOfScope), "bob@example.com", "user", blk},
			},
			users: 1,
		},
		{
			name:    "rule 10: an admin block stays",
			snap:    Snapshot{Users: []directory.User{du("alice"), outOfScope(du("bob"))}, Groups: staff("alice", "bob")},
			current: []account.User{stored(1, "alice", "user", "staff"), with(stored(2, "bob", "user", "staff"), blocked(account.ReasonAdmin))},
			want: []want{
				{ActionUnchanged, "", "alice@example.com", "user", active},
				{ActionSkip, SkipUserFilter, "bob@example.com", "", ""},
			},
			users: 1,
		},
		{
			// The filter decides before the other rules: a disabled or
			// unmapped user outside it is out of scope, not blocked_in_ldap.
			name:    "outside the filter and disabled: out_of_scope wins",
			snap:    Snapshot{Users: []directory.User{du("alice"), outOfScope(disabled(du("bob")))}, Groups: staff("alice", "bob")},
			current: []account.User{stored(1, "alice", "user", "staff"), stored(2, "bob", "user", "staff")},
			want: []want{
				{ActionUnchanged, "", "alice@example.com", "user", active},
				{ActionBlock, string(account.ReasonOutOfScope), "bob@example.com", "user", blk},
			},
			users: 1,
		},
		{
			name:    "one-user sync at login: skipped, never created",
			snap:    Snapshot{Users: []directory.User{outOfScope(du("carol"))}, Groups: staff("carol")},
			partial: true,
			want:    []want{{ActionSkip, SkipUserFilter, "carol@example.com", "", ""}},
			users:   0,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := BuildPlan(PlanInput{Dir: ldapDir(), Roles: testRoles, Snapshot: tc.snap, Current: tc.current,
				Now: testNow, Partial: tc.partial})
			if g := got(p); !slices.Equal(g, tc.want) {
				t.Errorf("changes:\n got %v\nwant %v", g, tc.want)
			}
			if p.DirectoryUsers != tc.users {
				t.Errorf("DirectoryUsers = %d, want %d", p.DirectoryUsers, tc.users)
			}
			for _, c := range p.Changes {
				if c.Action == ActionBlock && c.Fields["skip_reason"] != [2]string{"", SkipUserFilter} {
					t.Errorf("block of %s: audit skip_reason %v, want user_filter", c.Username, c.Fields["skip_reason"])
				}
			}
		})
	}
}

// TestPlanUserFilterSafety: blocks for user_filter count toward
// max_block_fraction like any block, and a filter that admits nobody is an
// empty read.
func TestPlanUserFilterSafety(t *testing.T) {
	var cur []account.User
	var in, out Snapshot
	for i := range 10 {
		name := fmt.Sprintf("u%02d", i)
		cur = append(cur, stored(uint64(i+1), name, "user", "staff"))
		in.Users = append(in.Users, du(name))
		if i < 7 {
			out.Users = append(out.Users, du(name))
		} else {
			out.Users = append(out.Users, outOfScope(du(name)))
		}
	}
	in.Groups = []directory.Group{grp(staffDN, names(in)...)}
	out.Groups = in.Groups
	none := Snapshot{Groups: in.Groups}
	for _, u := range in.Users {
		none.Users = append(none.Users, outOfScope(u))
	}

	tests := []struct {
		name   string
		snap   Snapshot
		blocks int
		err    error
	}{
		{"3 of 10 leave the filter: over 0.2, refused", out, 3, ErrTooManyBlocks},
		{"the filter admits nobody: empty read refused", none, 10, ErrEmptyRead},
		{"all in the filter: nothing to block", in, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := BuildPlan(PlanInput{Dir: ldapDir(), Roles: testRoles, Snapshot: tc.snap, Current: cur, Now: testNow})
			if p.BlocksOfActive() != tc.blocks {
				t.Errorf("BlocksOfActive = %d, want %d: %v", p.BlocksOfActive(), tc.blocks, got(p))
			}
			for _, c := range p.Changes {
				if c.Action == ActionBlock && c.Reason != string(account.ReasonOutOfScope) {
					t.Errorf("block reason %q for %s, want out_of_scope", c.Reason, c.Username)
				}
			}
			if err := p.Check(0.2, false); !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Errorf("Check = %v, want %v", err, tc.err)
			}
			if err := p.Check(0.2, true); err != nil {
				t.Errorf("forced Check = %v", err)
			}
		})
	}
}

func names(s Snapshot) []string {
	out := make([]string, 0, len(s.Users))
	for _, u := range s.Users {
		out = append(out, u.Username)
	}
	return out
}

// TestSyncUserFilter walks a user out of and back into user_filter on a
// real slapd (SPEC §4 rule 7): skipped and never created while outside,
// blocked out_of_scope (not deleted_in_ldap) on leaving, active again on
// coming back; the one-user sync at login does not create them either.
func TestSyncUserFilter(t *testing.T) {
	e := newEnv(t, func(d *config.Directory) {
		d.UserFilter = "(!(employeeType=contractor))"
		f := 0.5
		d.MaxBlockFraction = &f
	})
	ctx := e.ctx
	bob := e.fx.Users["bob"]
	absent := func(t *testing.T, name string) {
		t.Helper()
		if u, err := e.store.UserByName(ctx, e.fx.Login(name)); !errors.Is(err, cache.ErrNotFound) {
			t.Fatalf("%s is in the store (%+v, %v), want not created", name, u, err)
		}
	}
	e.srv.SetUserAttribute(t, bob, "employeeType", "contractor")

	t.Run("first sync skips bob", func(t *testing.T) {
		run := e.sync(t, Options{})
		if run.Result != cache.RunSuccess || run.DirectoryUsers != len(e.fx.Users)-1 {
			t.Fatalf("run %+v, want success with %d users in scope", run, len(e.fx.Users)-1)
		}
		absent(t, "bob")
		e.expect(t, "alice", "admin", account.StateActive, "")
		rows, err := e.s.Preview(ctx, testDirID)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, r := range rows {
			if r.Username == e.fx.Login("bob") {
				found = true
				if r.Action != string(ActionSkip) || r.Reason != SkipUserFilter || r.Exists {
					t.Errorf("preview of bob: %+v, want skip user_filter", r)
				}
			}
		}
		if !found {
			t.Error("preview does not list bob")
		}
	})
	t.Run("in the filter: created", func(t *testing.T) {
		e.srv.SetUserAttribute(t, bob, "employeeType", "")
		e.sync(t, Options{})
		e.expect(t, "bob", "user", account.StateActive, "")
	})
	t.Run("leaves the filter: blocked out_of_scope", func(t *testing.T) {
		e.srv.SetUserAttribute(t, bob, "employeeType", "contractor")
		run := e.sync(t, Options{})
		e.expect(t, "bob", "user", account.StateBlocked, account.ReasonOutOfScope)
		if run.Counts[string(ActionBlock)] != 1 || writes(run) != 1 {
			t.Errorf("run counts %v, want one block and nothing else written", run.Counts)
		}
		changes, err := e.store.RunChanges(ctx, run.ID)
		if err != nil || len(changes) != 1 {
			t.Fatalf("run changes %+v, %v", changes, err)
		}
		c := changes[0]
		// The audit says which scope rule it was.
		if c.Username != e.fx.Login("bob") || c.Action != string(ActionBlock) || c.Reason != string(account.ReasonOutOfScope) ||
			c.Fields["block_reason"] != [2]string{"", string(account.ReasonOutOfScope)} ||
			c.Fields["skip_reason"] != [2]string{"", SkipUserFilter} {
			t.Errorf("audit entry %+v, want bob blocked out_of_scope", c)
		}
		// Still outside: nothing more to write.
		if again := e.sync(t, Options{}); writes(again) != 0 {
			t.Errorf("second sync outside the filter wrote %v", again.Counts)
		}
		e.expect(t, "bob", "user", account.StateBlocked, account.ReasonOutOfScope)
	})
	t.Run("comes back: active again", func(t *testing.T) {
		e.srv.SetUserAttribute(t, bob, "employeeType", "")
		run := e.sync(t, Options{})
		e.expect(t, "bob", "user", account.StateActive, "")
		if run.Counts[string(ActionUnblock)] != 1 {
			t.Errorf("run counts %v, want one unblock", run.Counts)
		}
	})
	t.Run("a changed user_filter in the config", func(t *testing.T) {
		e.dir.UserFilter = "(!(uid=" + ldap.EscapeFilter(e.fx.Users["dave"]) + "))"
		e.setClient(nil)
		e.sync(t, Options{})
		e.expect(t, "dave", "user", account.StateBlocked, account.ReasonOutOfScope)
		e.expect(t, "bob", "user", account.StateActive, "")
		e.dir.UserFilter = ""
		e.setClient(nil)
		e.sync(t, Options{})
		e.expect(t, "dave", "user", account.StateActive, "")
	})
	t.Run("login sync does not create a user outside the filter", func(t *testing.T) {
		e.dir.UserFilter = "(!(employeeType=contractor))"
		e.setClient(nil)
		e.fx.AddUser(t, "henry", "admins")
		e.srv.SetUserAttribute(t, e.fx.Users["henry"], "employeeType", "contractor")
		client := e.dirs.List()[0].Client
		h, err := client.Authenticate(ctx, e.fx.Users["henry"], ldaptest.Password)
		if err != nil || !h.OutOfScope {
			t.Fatalf("Authenticate henry = %+v, %v; want found, OutOfScope", h, err)
		}
		if _, err := e.s.SyncOne(ctx, testDirID, h); !errors.Is(err, ErrSkipped) {
			t.Fatalf("SyncOne henry outside the filter = %v, want ErrSkipped", err)
		}
		absent(t, "henry")
		e.srv.SetUserAttribute(t, e.fx.Users["henry"], "employeeType", "")
		h, err = client.FindUser(ctx, e.fx.Users["henry"])
		if err != nil || h.OutOfScope {
			t.Fatalf("FindUser henry = %+v, %v; want in scope", h, err)
		}
		if u, err := e.s.SyncOne(ctx, testDirID, h); err != nil || !u.Active() || u.Role != "admin" {
			t.Fatalf("SyncOne henry in the filter = %+v, %v", u, err)
		}
	})
}
