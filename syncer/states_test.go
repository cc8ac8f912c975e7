package syncer

import (
	"testing"
	"time"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/directory"
)

// TestPlanAccountStates: SPEC §13's table as the planner applies it, at a
// fixed now. Only disabled and expired accounts are blocked; a lockout or
// a password that expired or must change leaves the user active (the
// login answers for those), and disabled wins over expired.
func TestPlanAccountStates(t *testing.T) {
	past, future := testNow.Add(-time.Hour), testNow.Add(time.Hour)
	entry := func(f func(*directory.User)) directory.User {
		u := du("bob")
		f(&u)
		return u
	}
	inLDAPAs := func(st account.LDAPStatus) func(*account.User) {
		return func(u *account.User) { u.State, u.LDAPStatus = account.StateBlockedInLDAP, st }
	}
	for _, tc := range []struct {
		name       string
		entry      directory.User
		before     *account.User // nil: a first sync
		wantAction Action
		wantState  account.State
		wantStatus account.LDAPStatus
	}{
		{"plain, new", entry(func(*directory.User) {}), nil, ActionCreate, active, ""},
		{"disabled, new", entry(func(u *directory.User) { u.Disabled = true }), nil, ActionCreate, inLDAP, account.LDAPStatusDisabled},
		{"expired, new", entry(func(u *directory.User) { u.AccountExpiresAt = past }), nil, ActionCreate, inLDAP, account.LDAPStatusExpired},
		{"expires exactly now", entry(func(u *directory.User) { u.AccountExpiresAt = testNow }), nil, ActionCreate, inLDAP, account.LDAPStatusExpired},
		{"expires later", entry(func(u *directory.User) { u.AccountExpiresAt = future }), nil, ActionCreate, active, ""},
		{"disabled and expired: disabled wins", entry(func(u *directory.User) { u.Disabled, u.AccountExpiresAt = true, past }), nil, ActionCreate, inLDAP, account.LDAPStatusDisabled},
		{"must change password: not a block", entry(func(u *directory.User) { u.PasswordMustChange = true }), nil, ActionCreate, active, ""},
		{"password expired: not a block", entry(func(u *directory.User) { u.PasswordExpiresAt = past }), nil, ActionCreate, active, ""},
		{"active user expires", entry(func(u *directory.User) { u.AccountExpiresAt = past }),
			ptr(stored(7, "bob", "user", "staff")), ActionBlock, inLDAP, account.LDAPStatusExpired},
		{"expired user extended", entry(func(u *directory.User) { u.AccountExpiresAt = future }),
			ptr(with(stored(7, "bob", "user", "staff"), inLDAPAs(account.LDAPStatusExpired))), ActionUnblock, active, ""},
		{"disabled user now only expired", entry(func(u *directory.User) { u.AccountExpiresAt = past }),
			ptr(with(stored(7, "bob", "user", "staff"), inLDAPAs(account.LDAPStatusDisabled))), ActionUpdate, inLDAP, account.LDAPStatusExpired},
		{"expired user unchanged", entry(func(u *directory.User) { u.AccountExpiresAt = past }),
			ptr(with(stored(7, "bob", "user", "staff"), inLDAPAs(account.LDAPStatusExpired))), ActionUnchanged, inLDAP, account.LDAPStatusExpired},
		{"admin block kept, status not set", entry(func(u *directory.User) { u.AccountExpiresAt = past }),
			ptr(with(stored(7, "bob", "user", "staff"), blocked(account.ReasonAdmin))), ActionUnchanged, blk, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := PlanInput{Dir: ldapDir(), Roles: testRoles, Now: testNow,
				Snapshot: Snapshot{Users: []directory.User{tc.entry}, Groups: []directory.Group{grp(staffDN, "bob")}}}
			if tc.before != nil {
				in.Current = []account.User{*tc.before}
			}
			p := BuildPlan(in)
			if len(p.Changes) != 1 {
				t.Fatalf("changes: %v", got(p))
			}
			c := p.Changes[0]
			if c.Action != tc.wantAction || c.After.State != tc.wantState || c.After.LDAPStatus != tc.wantStatus {
				t.Fatalf("change = %s state %s ldap_status %q; want %s state %s ldap_status %q",
					c.Action, c.After.State, c.After.LDAPStatus, tc.wantAction, tc.wantState, tc.wantStatus)
			}
			if tc.before != nil && tc.before.LDAPStatus != tc.wantStatus {
				if f := c.Fields["ldap_status"]; f != [2]string{string(tc.before.LDAPStatus), string(tc.wantStatus)} {
					t.Fatalf("audit fields lack the ldap_status change: %v", c.Fields)
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
