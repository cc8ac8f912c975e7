package conformance

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/directory"
	"github.com/ldapgate/ldapgate/internal/ldaptest"
	"github.com/ldapgate/ldapgate/syncer"
)

// The Active Directory rows that have no counterpart elsewhere: AD's query
// limits (MaxPageSize, MaxValRange; enforced on Samba by ldaptest's proxy,
// since Samba 4.17 has neither) and SPEC §4 rule 2.

// TestADPagingAndRangeRetrieval reads the OU=big tree: more users than one
// AD page holds, and a group with more members than one read returns.
func TestADPagingAndRangeRetrieval(t *testing.T) {
	s := ldaptest.SharedSamba(t)
	t.Parallel()
	ctx := testCtx(t)
	big := ldaptest.BigSambaDirectory(s)
	big.ID = 1
	big.ApplyDefaults()
	if big.PageSize != ldaptest.ADMaxPageSize {
		t.Fatalf("page_size %d, want %d: the read must page at AD's maximum", big.PageSize, ldaptest.ADMaxPageSize)
	}
	c := openClient(t, big)

	users, groups := readAll(t, ctx, c)
	if len(users) != ldaptest.BigSambaUsers {
		t.Fatalf("ReadUsers returned %d users, want %d (more than MaxPageSize %d: paging must continue)",
			len(users), ldaptest.BigSambaUsers, ldaptest.ADMaxPageSize)
	}
	userDN := map[string]bool{}
	for i := range ldaptest.BigSambaUsers {
		u, ok := users[ldaptest.BigSambaLogin(i)]
		if !ok {
			t.Fatalf("ReadUsers lacks %s", ldaptest.BigSambaLogin(i))
		}
		if !uuidForm.MatchString(u.UUID) || u.Disabled {
			t.Fatalf("%s: UUID %q, Disabled %v", u.Username, u.UUID, u.Disabled)
		}
		userDN[directory.NormalizeDN(u.DN)] = true
	}

	var bigstaff *directory.Group
	for i := range groups {
		if directory.EqualDN(groups[i].DN, ldaptest.BigSambaGroupDN(s)) {
			bigstaff = &groups[i]
		}
	}
	if bigstaff == nil {
		t.Fatalf("ReadGroups has no %s", ldaptest.BigSambaGroupDN(s))
	}
	seen := map[string]bool{}
	for _, m := range bigstaff.Members {
		n := directory.NormalizeDN(m)
		if seen[n] || !userDN[n] {
			t.Fatalf("bigstaff member %s: duplicate (%v) or not a big user", m, seen[n])
		}
		seen[n] = true
	}
	if len(seen) != ldaptest.BigSambaGroupMembers {
		t.Fatalf("bigstaff has %d members, want %d (more than MaxValRange %d: range retrieval must continue)",
			len(seen), ldaptest.BigSambaGroupMembers, ldaptest.ADMaxValRange)
	}

	// The syncer over the same tree: everyone in, role user through
	// bigstaff, in scope through Domain Users as their primary group.
	env := newSyncEnv(t, big)
	run, err := env.syncer.Sync(ctx, big.ID, syncer.Options{Trigger: syncer.TriggerAPI})
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if run.DirectoryUsers != ldaptest.BigSambaUsers || run.Counts[string(syncer.ActionCreate)] != ldaptest.BigSambaUsers {
		t.Fatalf("run read %d users and created %d, want %d each (counts %v)",
			run.DirectoryUsers, run.Counts[string(syncer.ActionCreate)], ldaptest.BigSambaUsers, run.Counts)
	}
	stored, err := env.store.UsersOfDirectory(ctx, big.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range stored {
		if u.State != account.StateActive || u.Role != "user" {
			t.Fatalf("%s: state %s role %q, want active user", u.Username, u.State, u.Role)
		}
	}
}

// setDomainUsers adds or removes a user of the fixture as an explicit member
// of Domain Users, the group rule 2 reaches Builtin\Users through.
func setDomainUsers(t *testing.T, s *ldaptest.Server, dn string, add bool) {
	t.Helper()
	req := ldap.NewModifyRequest("CN=Domain Users,CN=Users,"+s.BaseDN, nil)
	if add {
		req.Add("member", []string{dn})
	} else {
		req.Delete("member", []string{dn})
	}
	if err := s.AdminConn(t).Modify(req); err != nil {
		t.Fatalf("change Domain Users (%s): %v", dn, err)
	}
}

// TestADRule2 is SPEC §4 rule 2 on a real AD: a user counts only through
// CN=Users,CN=Builtin — directly, nested, or through the primary group.
func TestADRule2(t *testing.T) {
	s := ldaptest.SharedSamba(t)
	t.Parallel()
	ctx := testCtx(t)
	f := s.NewFixture(t)
	cfg := dirConfig(f)
	env := newSyncEnv(t, cfg)

	rows, err := env.syncer.Preview(ctx, cfg.ID)
	if err != nil {
		t.Fatalf("Preview: %v", err)
	}
	want := map[string]struct{ action, reason, role string }{
		// staff is mapped, but no path leads outsider to Builtin\Users.
		"outsider": {string(syncer.ActionSkip), syncer.SkipNotInADUsers, ""},
		// staff is primary's primary group: never in memberOf, found
		// through primaryGroupID and staff's objectSid RID.
		"primary": {string(syncer.ActionCreate), "", "user"},
		// An ordinary user: in scope only through primaryGroupID 513.
		"bob": {string(syncer.ActionCreate), "", "user"},
		// Nested and primary-group paths combine: devs ⊂ staff.
		"dave":  {string(syncer.ActionCreate), "", "user"},
		"alice": {string(syncer.ActionCreate), "", "admin"},
		"erin":  {string(syncer.ActionSkip), syncer.SkipNoMappedGroup, ""},
	}
	got := map[string]syncer.PreviewRow{}
	for _, r := range rows {
		got[strings.ToLower(r.Username)] = r
	}
	for logical, w := range want {
		r, ok := got[strings.ToLower(f.Login(logical))]
		if !ok {
			t.Errorf("preview has no row for %s (%s)", logical, f.Login(logical))
			continue
		}
		if r.Action != w.action || r.Reason != w.reason || (w.role != "" && r.Role != w.role) {
			t.Errorf("preview %s: action %s reason %q role %q, want %s %q %q",
				logical, r.Action, r.Reason, r.Role, w.action, w.reason, w.role)
		}
	}

	// The same through a real sync, then outsider comes into scope
	// (explicit Domain Users membership: the direct path) and leaves it
	// again, which blocks them out_of_scope (rule 7), not deleted_in_ldap.
	mustSync(t, ctx, env)
	if _, err := env.store.UserByName(ctx, f.Login("outsider")); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("outsider in the store after the first sync (err %v), want skipped", err)
	}
	expectUser(t, ctx, env, f, "primary", account.StateActive, "", "user")

	outsiderDN := "CN=" + ldap.EscapeDN(f.Users["outsider"]) + ",OU=users,OU=" + f.Prefix + "," + s.BaseDN
	setDomainUsers(t, s, outsiderDN, true)
	mustSync(t, ctx, env)
	expectUser(t, ctx, env, f, "outsider", account.StateActive, "", "user")

	setDomainUsers(t, s, outsiderDN, false)
	run := mustSync(t, ctx, env)
	expectUser(t, ctx, env, f, "outsider", account.StateBlocked, account.ReasonOutOfScope, "user")
	if run.Counts[string(syncer.ActionBlock)] != 1 {
		t.Errorf("counts %v, want exactly one block", run.Counts)
	}

	// SyncOne (the login path's on-the-spot sync) applies rule 2 too: it
	// refuses outsider and leaves the record alone, and admits a newcomer
	// whose only path to Builtin\Users is the default primary group.
	ou, err := env.client.FindUser(ctx, f.Users["outsider"])
	if err != nil {
		t.Fatal(err)
	}
	if got, err := env.syncer.SyncOne(ctx, cfg.ID, ou); err == nil && got.Active() {
		t.Errorf("SyncOne(outsider) = %s, admitted; want refused", got.State)
	} else if err != nil && !errors.Is(err, syncer.ErrSkipped) {
		t.Errorf("SyncOne(outsider) = %v, want ErrSkipped", err)
	}
	expectUser(t, ctx, env, f, "outsider", account.StateBlocked, account.ReasonOutOfScope, "user")

	f.AddUser(t, "newcomer", "staff")
	nu, err := env.client.FindUser(ctx, f.Users["newcomer"])
	if err != nil {
		t.Fatal(err)
	}
	nuStored, err := env.syncer.SyncOne(ctx, cfg.ID, nu)
	if err != nil || nuStored.State != account.StateActive || nuStored.Role != "user" {
		t.Errorf("SyncOne(newcomer in staff, primary group Domain Users) = %s %q, %v; want active user",
			nuStored.State, nuStored.Role, err)
	}
}

// mustSync runs a real sync and fails the test unless it succeeded.
func mustSync(t *testing.T, ctx context.Context, env *syncEnv) cache.Run {
	t.Helper()
	run, err := env.syncer.Sync(ctx, env.cfg.ID, syncer.Options{Trigger: syncer.TriggerAPI})
	if err != nil || run.Result != cache.RunSuccess {
		t.Fatalf("Sync = %s, %v (counts %v)", run.Result, err, run.Counts)
	}
	return run
}

// expectUser checks a fixture user's store record.
func expectUser(t *testing.T, ctx context.Context, env *syncEnv, f *ldaptest.Fixture, logical string,
	state account.State, reason account.BlockReason, role string) account.User {
	t.Helper()
	u, err := env.store.UserByName(ctx, f.Login(logical))
	if err != nil {
		t.Fatalf("%s (%s) not in the store: %v", logical, f.Login(logical), err)
	}
	if u.State != state || u.BlockReason != reason || u.Role != role {
		t.Errorf("%s: state %s/%q role %q, want %s/%q role %q", logical, u.State, u.BlockReason, u.Role, state, reason, role)
	}
	return u
}

// TestADLockoutIsNotABlock (issue 6): a temporary lockout (lockoutTime set)
// refuses the bind with 49/data 775 but is not a directory block: the read
// says enabled and the sync leaves the user active; clearing it lets the
// user in again. Only userAccountControl's 0x2 is "disabled".
func TestADLockoutIsNotABlock(t *testing.T) {
	s := ldaptest.SharedSamba(t)
	t.Parallel()
	ctx := testCtx(t)
	f := s.NewFixture(t)
	cfg := dirConfig(f)
	env := newSyncEnv(t, cfg)
	mustSync(t, ctx, env)

	u, err := env.client.FindUser(ctx, f.Users["bob"])
	if err != nil {
		t.Fatal(err)
	}
	setLockout := func(v string) {
		t.Helper()
		req := ldap.NewModifyRequest(u.DN, nil)
		req.Replace("lockoutTime", []string{v})
		if err := s.AdminConn(t).Modify(req); err != nil {
			t.Fatalf("set lockoutTime %s: %v", v, err)
		}
	}
	// lockoutTime is a FILETIME: 100 ns ticks since 1601-01-01.
	setLockout(strconv.FormatInt((time.Now().Unix()+11644473600)*10_000_000, 10))

	if _, err := env.client.Authenticate(ctx, f.Users["bob"], ldaptest.Password); !errors.Is(err, directory.ErrAccountLocked) {
		t.Errorf("Authenticate(locked bob) = %v, want ErrAccountLocked (data 775)", err)
	}
	if got, err := env.client.FindUser(ctx, f.Users["bob"]); err != nil || got.Disabled {
		t.Errorf("FindUser(locked bob) = Disabled %v, %v; want enabled", got.Disabled, err)
	}
	run := mustSync(t, ctx, env)
	expectUser(t, ctx, env, f, "bob", account.StateActive, "", "user")
	if ch, _ := env.store.RunChanges(ctx, run.ID); len(ch) != 0 {
		t.Errorf("a lockout changed %d users: %+v", len(ch), ch)
	}

	setLockout("0")
	if _, err := env.client.Authenticate(ctx, f.Users["bob"], ldaptest.Password); err != nil {
		t.Errorf("Authenticate(unlocked bob) = %v", err)
	}
}
