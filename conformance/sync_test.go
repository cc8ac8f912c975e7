package conformance

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/internal/ldaptest"
	"github.com/ldapgate/ldapgate/syncer"
)

// want is a fixture user's expected store record after a step; absent
// users must not be in the store at all.
type want struct {
	state  account.State
	reason account.BlockReason
	role   string
}

var (
	activeAdmin = want{account.StateActive, "", "admin"}
	activeUser  = want{account.StateActive, "", "user"}
)

// change is one expected audit entry: the logical user and the action.
type change struct {
	user   string
	action syncer.Action
}

// TestSyncConformance walks one directory through the life cycle of SPEC §4
// on every flavour: each step changes the directory (or the store), syncs,
// and checks every fixture user's record and the run's audit entries.
func TestSyncConformance(t *testing.T) {
	ldaptest.Each(t, func(t *testing.T, s *ldaptest.Server) {
		t.Parallel()
		ctx := testCtx(t)
		f := s.NewFixture(t)
		cfg := dirConfig(f)
		// One block per step here; the default 0.2 would refuse blocking one
		// of four active users, and the refusal has its own tests (syncer).
		half := 0.5
		cfg.MaxBlockFraction = &half
		env := newSyncEnv(t, cfg)
		ad := s.Flavor == samba

		// Expected records, updated step by step.
		state := map[string]want{
			"alice": activeAdmin,
			"bob":   activeUser,
			// Rule 8: created, but blocked_in_ldap (the role still follows
			// the directory for the day they are re-enabled).
			"carol": {account.StateBlockedInLDAP, "", "user"},
			"dave":  activeUser, // devs ⊂ staff: nesting counts (rule 5)
			"frank": activeAdmin,
			"star":  activeUser,
			// erin: only in the unmapped group, default_role empty: skipped.
		}
		first := []change{{"alice", syncer.ActionCreate}, {"bob", syncer.ActionCreate},
			{"carol", syncer.ActionCreate}, {"dave", syncer.ActionCreate},
			{"frank", syncer.ActionCreate}, {"star", syncer.ActionCreate}}
		if ad {
			state["primary"] = activeUser // outsider: skipped by rule 2
			first = append(first, change{"primary", syncer.ActionCreate})
		}

		steps := []struct {
			name    string
			do      func(t *testing.T)
			update  map[string]*want // nil value: no longer in the store
			changes []change
		}{
			{name: "first sync", changes: first},
			{name: "unchanged re-sync writes nothing"},
			{
				name: "bob deleted in the directory",
				do: func(t *testing.T) {
					f.DeleteUser(t, "bob")
					// A dry run first: the plan, recorded, nothing applied.
					run, err := env.syncer.Sync(ctx, cfg.ID, syncer.Options{DryRun: true, Trigger: syncer.TriggerAPI})
					if err != nil || run.Result != cache.RunDryRun || run.Counts[string(syncer.ActionBlock)] != 1 {
						t.Fatalf("dry run = %s %v, %v; want dry_run with one block", run.Result, run.Counts, err)
					}
					expectUser(t, ctx, env, f, "bob", account.StateActive, "", "user")
					// Its changes are the plan's, each marked planned (not applied).
					if ch, err := env.store.RunChanges(ctx, run.ID); err != nil || len(ch) != 1 || !ch[0].Planned {
						t.Fatalf("dry run recorded %+v (%v); want bob's block, planned", ch, err)
					}
				},
				update:  map[string]*want{"bob": {account.StateBlocked, account.ReasonDeletedInLDAP, "user"}},
				changes: []change{{"bob", syncer.ActionBlock}},
			},
			{
				name:    "dave disabled in the directory",
				do:      func(t *testing.T) { f.SetDisabled(t, "dave", true) },
				update:  map[string]*want{"dave": {account.StateBlockedInLDAP, "", "user"}},
				changes: []change{{"dave", syncer.ActionBlock}},
			},
			{
				name:    "dave re-enabled",
				do:      func(t *testing.T) { f.SetDisabled(t, "dave", false) },
				update:  map[string]*want{"dave": &activeUser},
				changes: []change{{"dave", syncer.ActionUnblock}},
			},
			{
				name:    "frank leaves admins, keeps staff",
				do:      func(t *testing.T) { f.RemoveMember(t, "admins", "frank") },
				update:  map[string]*want{"frank": &activeUser},
				changes: []change{{"frank", syncer.ActionUpdate}},
			},
			{
				// Rule 10: the admin block stays; the fields the directory
				// owns (here the role) still follow it.
				name: "admin block survives a sync",
				do: func(t *testing.T) {
					adminBlock(t, ctx, env, f, "alice")
					f.RemoveMember(t, "admins", "alice")
					f.AddMember(t, "staff", "alice")
				},
				update:  map[string]*want{"alice": {account.StateBlocked, account.ReasonAdmin, "user"}},
				changes: []change{{"alice", syncer.ActionUpdate}},
			},
			{
				name: "a synced user deleted in the store is created again",
				do: func(t *testing.T) {
					u := expectUser(t, ctx, env, f, "star", account.StateActive, "", "user")
					if err := env.store.DeleteUser(ctx, u.ID); err != nil {
						t.Fatal(err)
					}
				},
				changes: []change{{"star", syncer.ActionCreate}},
			},
			{
				name:    "erin joins a mapped group",
				do:      func(t *testing.T) { f.AddMember(t, "staff", "erin") },
				update:  map[string]*want{"erin": &activeUser},
				changes: []change{{"erin", syncer.ActionCreate}},
			},
			{
				name:    "erin leaves it: out of scope",
				do:      func(t *testing.T) { f.RemoveMember(t, "staff", "erin") },
				update:  map[string]*want{"erin": {account.StateBlocked, account.ReasonOutOfScope, "user"}},
				changes: []change{{"erin", syncer.ActionBlock}},
			},
			{
				name:    "erin comes back: active again",
				do:      func(t *testing.T) { f.AddMember(t, "staff", "erin") },
				update:  map[string]*want{"erin": &activeUser},
				changes: []change{{"erin", syncer.ActionUnblock}},
			},
			{name: "unchanged re-sync still writes nothing"},
		}
		for _, st := range steps {
			// Steps build on each other: stop at the first failure.
			ok := t.Run(st.name, func(t *testing.T) {
				if st.do != nil {
					st.do(t)
				}
				for name, w := range st.update {
					if w == nil {
						delete(state, name)
					} else {
						state[name] = *w
					}
				}
				run := mustSync(t, ctx, env)
				checkStore(t, ctx, env, f, state)
				checkChanges(t, ctx, env, f, run, st.changes)
			})
			if !ok {
				return
			}
		}
	})
}

// adminBlock blocks a user the way the admin API does (rule 10's block).
func adminBlock(t *testing.T, ctx context.Context, env *syncEnv, f *ldaptest.Fixture, logical string) {
	t.Helper()
	u, err := env.store.UserByName(ctx, f.Login(logical))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.store.UpdateUser(ctx, u.ID, func(u *account.User) error {
		u.State, u.BlockReason = account.StateBlocked, account.ReasonAdmin
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// checkStore compares the directory's store users with the expected set:
// same users, states, reasons and roles, and the directory's own fields.
func checkStore(t *testing.T, ctx context.Context, env *syncEnv, f *ldaptest.Fixture, exp map[string]want) {
	t.Helper()
	stored, err := env.store.UsersOfDirectory(ctx, env.cfg.ID)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]account.User{}
	for _, u := range stored {
		byName[u.Username] = u
	}
	for logical, w := range exp {
		name := strings.ToLower(f.Login(logical))
		u, ok := byName[name]
		if !ok {
			t.Errorf("%s (%s) not in the store", logical, name)
			continue
		}
		delete(byName, name)
		if u.State != w.state || u.BlockReason != w.reason || u.Role != w.role {
			t.Errorf("%s: %s/%q role %q, want %s/%q role %q", logical, u.State, u.BlockReason, u.Role, w.state, w.reason, w.role)
		}
		if u.Source != account.SourceLDAP || u.DirectoryID != env.cfg.ID || !uuidForm.MatchString(u.LDAPUUID) || u.LDAPDN == "" {
			t.Errorf("%s: source %s dir %d uuid %q dn %q: not a synced record", logical, u.Source, u.DirectoryID, u.LDAPUUID, u.LDAPDN)
		}
		if want := strings.ToLower(f.Users[logical] + "@example.com"); !strings.EqualFold(u.Email, want) {
			t.Errorf("%s: email %q, want %q", logical, u.Email, want)
		}
		if u.Role == "admin" && !slices.Contains(u.Groups, "admins") {
			t.Errorf("%s: groups %v lack admins", logical, u.Groups)
		}
	}
	for name, u := range byName {
		t.Errorf("unexpected store user %s (%s/%s)", name, u.State, u.BlockReason)
	}
}

// checkChanges compares the run's audit entries with the expected changes;
// a step expecting none must leave the run without writes.
func checkChanges(t *testing.T, ctx context.Context, env *syncEnv, f *ldaptest.Fixture, run cache.Run, exp []change) {
	t.Helper()
	entries, err := env.store.RunChanges(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	var got, wantS []string
	for _, e := range entries {
		got = append(got, fmt.Sprintf("%s %s", e.Action, strings.ToLower(e.Username)))
	}
	for _, c := range exp {
		wantS = append(wantS, fmt.Sprintf("%s %s", c.action, strings.ToLower(f.Login(c.user))))
	}
	slices.Sort(got)
	slices.Sort(wantS)
	if !slices.Equal(got, wantS) {
		t.Errorf("audit entries %q, want %q", got, wantS)
	}
	writes := 0
	for a, n := range run.Counts {
		if syncer.Action(a).Writes() {
			writes += n
		}
	}
	if writes != len(exp) {
		t.Errorf("run counts %v: %d writes, want %d", run.Counts, writes, len(exp))
	}
}
