package syncer

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/directory"
)

var (
	testRoles = []string{"admin", "advanced_user", "user"}
	testNow   = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
)

const (
	base      = "dc=example,dc=com"
	groupsDN  = "ou=groups," + base
	adminsDN  = "cn=admins," + groupsDN
	staffDN   = "cn=staff," + groupsDN
	powerDN   = "cn=power," + groupsDN
	devsDN    = "cn=devs," + groupsDN
	othersDN  = "cn=others," + groupsDN
	adBase    = "DC=corp,DC=example,DC=com"
	adUsersDN = "CN=Users,CN=Builtin," + adBase
)

func ldapDir() config.Directory {
	return config.Directory{
		ID: 1, Name: "corp", Type: config.TypeLDAP, BaseDN: base, Domain: "example.com",
		Naming: config.NamingUsernameAtDomain, GroupNameAttribute: "cn",
		RoleMapping: map[string][]string{
			"admin": {adminsDN},
			// Written the way an operator might: other case, spaces.
			"user":          {"CN=Staff, OU=Groups, DC=Example, DC=Com"},
			"advanced_user": {powerDN},
		},
	}
}

func adDir() config.Directory {
	return config.Directory{
		ID: 1, Name: "ad", Type: config.TypeActiveDirectory, BaseDN: adBase, Domain: "corp.example.com",
		Naming: config.NamingUsernameAtDomain, GroupNameAttribute: "memberOf",
		RoleMapping: map[string][]string{"user": {"CN=Staff,CN=Users," + adBase}},
	}
}

func dn(name string) string { return "uid=" + name + ",ou=users," + base }

// du is a directory entry for name.
func du(name string) directory.User {
	return directory.User{DN: dn(name), UUID: "uuid-" + name, Username: name,
		Email: name + "@example.com", DisplayName: strings.ToUpper(name)}
}

func grp(dnv string, members ...string) directory.Group {
	g := directory.Group{DN: dnv, Name: rdnValue(dnv)}
	for _, m := range members {
		if strings.Contains(m, "=") {
			g.Members = append(g.Members, m)
		} else {
			g.Members = append(g.Members, dn(m))
		}
	}
	return g
}

// stored is the store user an earlier sync of du(name) with role would have
// written.
func stored(id uint64, name, role string, groups ...string) account.User {
	u := du(name)
	return account.User{ID: id, Username: name + "@example.com", Email: u.Email, DisplayName: u.DisplayName,
		Role: role, Groups: groups, State: account.StateActive, Source: account.SourceLDAP,
		DirectoryID: 1, LDAPDN: u.DN, LDAPUUID: u.UUID}
}

func with(u account.User, f func(*account.User)) account.User { f(&u); return u }

func blocked(reason account.BlockReason) func(*account.User) {
	return func(u *account.User) { u.State, u.BlockReason = account.StateBlocked, reason }
}

func disabled(u directory.User) directory.User { u.Disabled = true; return u }

// want is one expected change: action, reason, username, role, state.
type want struct {
	action Action
	reason string
	user   string
	role   string
	state  account.State
}

func (w want) String() string {
	return fmt.Sprintf("%s(%s) %s role=%s state=%s", w.action, w.reason, w.user, w.role, w.state)
}

func got(p Plan) []want {
	out := make([]want, 0, len(p.Changes))
	for _, c := range p.Changes {
		out = append(out, want{c.Action, c.Reason, c.Username, c.After.Role, c.After.State})
	}
	return out
}

const (
	active = account.StateActive
	blk    = account.StateBlocked
	inLDAP = account.StateBlockedInLDAP
)

func TestPlanRules(t *testing.T) {
	local := account.User{ID: 40, Username: "bob@example.com", Role: "user", State: active,
		Source: account.SourceLocal, PasswordHash: "$argon2id$v=19$secret"}
	other := account.User{ID: 50, Username: "bob@example.com", Role: "admin", State: active,
		Source: account.SourceLDAP, DirectoryID: 2, LDAPUUID: "uuid-bob", LDAPDN: dn("bob")}
	removed := other
	removed.State, removed.BlockReason = account.StateBlocked, account.ReasonDirectoryRemoved
	removedAdminBlocked := other
	removedAdminBlocked.State, removedAdminBlocked.BlockReason = account.StateBlocked, account.ReasonAdmin

	tests := []struct {
		name    string
		dir     func(*config.Directory)
		snap    Snapshot
		current []account.User
		byName  []account.User
		partial bool
		want    []want
	}{
		{
			name: "rule 3: unknown users are created with their mapped role",
			snap: Snapshot{
				Users:  []directory.User{du("alice"), du("bob")},
				Groups: []directory.Group{grp(adminsDN, "alice"), grp(staffDN, "bob")},
			},
			want: []want{
				{ActionCreate, "", "alice@example.com", "admin", active},
				{ActionCreate, "", "bob@example.com", "user", active},
			},
		},
		{
			name: "rule 5: several mapped groups, the highest role wins",
			snap: Snapshot{
				Users: []directory.User{du("frank"), du("gina")},
				Groups: []directory.Group{grp(staffDN, "frank", "gina"), grp(adminsDN, "frank"),
					grp(powerDN, "gina")},
			},
			want: []want{
				{ActionCreate, "", "frank@example.com", "admin", active},
				{ActionCreate, "", "gina@example.com", "advanced_user", active},
			},
		},
		{
			name: "rule 5: nested groups count, through several levels",
			snap: Snapshot{
				Users: []directory.User{du("dave")},
				Groups: []directory.Group{grp(staffDN, devsDN), grp(devsDN, "cn=backend,"+groupsDN),
					grp("cn=backend,"+groupsDN, "dave")},
			},
			want: []want{{ActionCreate, "", "dave@example.com", "user", active}},
		},
		{
			name: "rule 5: a group cycle ends and still resolves",
			snap: Snapshot{
				Users: []directory.User{du("dave"), du("erin")},
				Groups: []directory.Group{
					grp("cn=a,"+groupsDN, "cn=b,"+groupsDN, "dave"),
					grp("cn=b,"+groupsDN, "cn=a,"+groupsDN),
					grp(staffDN, "cn=b,"+groupsDN),
					// A cycle that reaches no mapped group.
					grp("cn=x,"+groupsDN, "cn=y,"+groupsDN, "erin"),
					grp("cn=y,"+groupsDN, "cn=x,"+groupsDN),
				},
			},
			want: []want{
				{ActionCreate, "", "dave@example.com", "user", active},
				{ActionSkip, SkipNoMappedGroup, "erin@example.com", "", ""},
			},
		},
		{
			name: "DNs compare per RFC 4514, case-insensitively",
			snap: Snapshot{
				Users: []directory.User{du("bob")},
				// Member value in another case and spacing than the entry.
				Groups: []directory.Group{grp("cn=STAFF,ou=Groups,dc=EXAMPLE,dc=com", "UID=Bob, OU=Users,DC=example,DC=COM")},
			},
			want: []want{{ActionCreate, "", "bob@example.com", "user", active}},
		},
		{
			name: "rule 5: no mapped group and no default role: skipped",
			snap: Snapshot{
				Users:  []directory.User{du("erin")},
				Groups: []directory.Group{grp(othersDN, "erin")},
			},
			want: []want{{ActionSkip, SkipNoMappedGroup, "erin@example.com", "", ""}},
		},
		{
			name: "rule 5: no mapped group gets default_role",
			dir:  func(d *config.Directory) { d.DefaultRole = "user" },
			snap: Snapshot{
				Users:  []directory.User{du("erin")},
				Groups: []directory.Group{grp(othersDN, "erin")},
			},
			want: []want{{ActionCreate, "", "erin@example.com", "user", active}},
		},
		{
			name: "posix groups: memberUid matches the login attribute",
			snap: Snapshot{
				Users: []directory.User{du("bob")},
				Groups: []directory.Group{{DN: staffDN, Name: "staff", MemberUIDs: []string{"Bob"}},
					{DN: adminsDN, Name: "admins", MemberUIDs: []string{"bobby"}}},
			},
			want: []want{{ActionCreate, "", "bob@example.com", "user", active}},
		},
		{
			name: "memberOf mode: only the users' memberOf counts, groups nest by their memberOf",
			dir:  func(d *config.Directory) { d.GroupNameAttribute = "memberOf" },
			snap: Snapshot{
				Users: []directory.User{
					func() directory.User {
						u := du("alice")
						u.MemberOf = []string{"CN=Admins,OU=Groups,DC=Example,DC=Com"}
						return u
					}(),
					func() directory.User { u := du("dave"); u.MemberOf = []string{devsDN}; return u }(),
					du("carl"), // listed as a member value only: ignored in this mode
				},
				Groups: []directory.Group{
					grp(adminsDN, "carl"),
					{DN: devsDN, Name: "devs", MemberOf: []string{staffDN}},
					{DN: staffDN, Name: "staff"},
				},
			},
			want: []want{
				{ActionCreate, "", "alice@example.com", "admin", active},
				{ActionCreate, "", "dave@example.com", "user", active},
				{ActionSkip, SkipNoMappedGroup, "carl@example.com", "", ""},
			},
		},
		{
			name: "rule 1: legacy naming uses the mail, users without mail are skipped",
			dir:  func(d *config.Directory) { d.Naming = config.NamingEmail },
			snap: Snapshot{
				Users: []directory.User{
					func() directory.User { u := du("bob"); u.Email = "Bob.Smith@Example.COM"; return u }(),
					func() directory.User { u := du("nomail"); u.Email = ""; return u }(),
				},
				Groups: []directory.Group{grp(staffDN, "bob", "nomail")},
			},
			want: []want{
				{ActionCreate, "", "bob.smith@example.com", "user", active},
				{ActionSkip, SkipNoEmail, "nomail", "user", ""},
			},
		},
		{
			name: "legacy naming: two entries with one mail get neither name",
			dir:  func(d *config.Directory) { d.Naming = config.NamingEmail },
			snap: Snapshot{
				Users: []directory.User{
					func() directory.User { u := du("a"); u.Email = "team@example.com"; return u }(),
					func() directory.User { u := du("b"); u.Email = "TEAM@example.com"; return u }(),
				},
				Groups: []directory.Group{grp(staffDN, "a", "b")},
			},
			want: []want{
				{ActionSkip, SkipDuplicateName, "team@example.com", "user", ""},
				{ActionSkip, SkipDuplicateName, "team@example.com", "user", ""},
			},
		},
		{
			name: "two entries with one uuid: the second is skipped",
			snap: Snapshot{
				Users:  []directory.User{du("bob"), func() directory.User { u := du("bobby"); u.UUID = "uuid-bob"; return u }()},
				Groups: []directory.Group{grp(staffDN, "bob", "bobby")},
			},
			current: []account.User{stored(2, "bob", "user", "staff")},
			want: []want{
				{ActionUnchanged, "", "bob@example.com", "user", active},
				{ActionSkip, SkipDuplicateUUID, "bobby@example.com", "user", ""},
			},
		},
		{
			name: "rule 4: a local user of the same name is converted",
			snap: Snapshot{
				Users:  []directory.User{du("bob")},
				Groups: []directory.Group{grp(staffDN, "bob")},
			},
			byName: []account.User{local},
			want:   []want{{ActionConvertLocal, "", "bob@example.com", "user", active}},
		},
		{
			name: "rule 6: a user deleted by an admin is created again",
			snap: Snapshot{
				Users:  []directory.User{du("alice"), du("bob")},
				Groups: []directory.Group{grp(adminsDN, "alice"), grp(staffDN, "bob")},
			},
			current: []account.User{stored(1, "alice", "admin", "admins")},
			want: []want{
				{ActionUnchanged, "", "alice@example.com", "admin", active},
				{ActionCreate, "", "bob@example.com", "user", active},
			},
		},
		{
			name: "rule 7: gone from the directory → deleted_in_ldap; skipped now → out_of_scope",
			snap: Snapshot{
				Users:  []directory.User{du("alice"), du("erin")},
				Groups: []directory.Group{grp(adminsDN, "alice"), grp(othersDN, "erin")},
			},
			current: []account.User{
				stored(1, "alice", "admin", "admins"),
				stored(2, "bob", "user", "staff"),
				stored(3, "erin", "user", "staff"),
				// Already blocked for that reason: nothing to write.
				with(stored(4, "old", "user"), blocked(account.ReasonDeletedInLDAP)),
			},
			want: []want{
				{ActionUnchanged, "", "alice@example.com", "admin", active},
				{ActionBlock, string(account.ReasonOutOfScope), "erin@example.com", "user", blk},
				{ActionBlock, string(account.ReasonDeletedInLDAP), "bob@example.com", "user", blk},
			},
		},
		{
			name: "rule 7: users who come back are active again",
			snap: Snapshot{
				Users:  []directory.User{du("bob"), du("erin")},
				Groups: []directory.Group{grp(staffDN, "bob", "erin")},
			},
			current: []account.User{
				with(stored(2, "bob", "user", "staff"), blocked(account.ReasonDeletedInLDAP)),
				with(stored(3, "erin", "user", "staff"), blocked(account.ReasonOutOfScope)),
			},
			want: []want{
				{ActionUnblock, string(account.ReasonDeletedInLDAP), "bob@example.com", "user", active},
				{ActionUnblock, string(account.ReasonOutOfScope), "erin@example.com", "user", active},
			},
		},
		{
			name: "rule 8: disabled → blocked_in_ldap, re-enabled → active",
			snap: Snapshot{
				Users:  []directory.User{disabled(du("carol")), du("bob"), disabled(du("new"))},
				Groups: []directory.Group{grp(staffDN, "carol", "bob", "new")},
			},
			current: []account.User{
				stored(2, "carol", "user", "staff"),
				with(stored(3, "bob", "user", "staff"), func(u *account.User) { u.State = inLDAP }),
			},
			want: []want{
				{ActionBlock, "blocked_in_ldap", "carol@example.com", "user", inLDAP},
				{ActionUnblock, "blocked_in_ldap", "bob@example.com", "user", active},
				{ActionCreate, "", "new@example.com", "user", inLDAP},
			},
		},
		{
			name: "rule 10: an admin block is never undone; fields still follow the directory",
			snap: Snapshot{
				Users:  []directory.User{du("alice"), du("erin"), disabled(du("carol"))},
				Groups: []directory.Group{grp(adminsDN, "alice"), grp(othersDN, "erin"), grp(staffDN, "carol")},
			},
			current: []account.User{
				// role changes user → admin; the block stays.
				with(stored(1, "alice", "user", "staff"), blocked(account.ReasonAdmin)),
				with(stored(2, "bob", "user", "staff"), blocked(account.ReasonAdmin)),   // deleted in LDAP
				with(stored(3, "erin", "user", "staff"), blocked(account.ReasonAdmin)),  // out of scope
				with(stored(4, "carol", "user", "staff"), blocked(account.ReasonAdmin)), // disabled
			},
			want: []want{
				{ActionUpdate, "", "alice@example.com", "admin", blk},
				{ActionSkip, SkipNoMappedGroup, "erin@example.com", "", ""},
				{ActionUnchanged, "", "carol@example.com", "user", blk},
			},
		},
		{
			name: "rule 10: users of other directories are never touched",
			snap: Snapshot{
				Users:  []directory.User{du("bob")},
				Groups: []directory.Group{grp(staffDN, "bob")},
			},
			// The other directory's user is passed in by mistake, with the
			// same uuid even: it must not be blocked, matched or renamed.
			current: []account.User{other},
			byName:  []account.User{other},
			want:    []want{{ActionSkip, SkipNameTakenOtherDirectory, "bob@example.com", "user", ""}},
		},
		{
			name: "rule 9 then a rename: this directory adopts a removed directory's user of the same name",
			snap: Snapshot{
				Users:  []directory.User{du("bob")},
				Groups: []directory.Group{grp(staffDN, "bob")},
			},
			byName: []account.User{removed},
			want:   []want{{ActionAdopt, string(account.ReasonDirectoryRemoved), "bob@example.com", "user", active}},
		},
		{
			name: "an admin block outlives its directory: not adopted",
			snap: Snapshot{
				Users:  []directory.User{du("bob")},
				Groups: []directory.Group{grp(staffDN, "bob")},
			},
			byName: []account.User{removedAdminBlocked},
			want:   []want{{ActionSkip, SkipNameTakenOtherDirectory, "bob@example.com", "user", ""}},
		},
		{
			name: "rename in LDAP: same uuid, new name → the user is renamed",
			snap: Snapshot{
				Users: []directory.User{func() directory.User {
					u := du("bob")
					u.Username, u.DN = "robert", dn("robert")
					return u
				}()},
				Groups: []directory.Group{grp(staffDN, "robert")},
			},
			current: []account.User{stored(2, "bob", "user", "staff")},
			want:    []want{{ActionUpdate, "", "robert@example.com", "user", active}},
		},
		{
			name: "rename onto a name in use: skipped, the user is left as is",
			snap: Snapshot{
				Users: []directory.User{func() directory.User {
					u := du("bob")
					u.Username = "alice"
					return u
				}()},
				Groups: []directory.Group{grp(staffDN, "bob")},
			},
			current: []account.User{stored(2, "bob", "user", "staff"),
				with(stored(1, "alice", "admin"), blocked(account.ReasonDeletedInLDAP))},
			want: []want{{ActionSkip, SkipNameTaken, "alice@example.com", "user", ""}},
		},
		{
			name: "an entry re-created under the same name (new uuid) takes its user over",
			snap: Snapshot{
				Users:  []directory.User{func() directory.User { u := du("bob"); u.UUID = "uuid-new"; return u }()},
				Groups: []directory.Group{grp(staffDN, "bob")},
			},
			current: []account.User{with(stored(2, "bob", "user", "staff"), blocked(account.ReasonDeletedInLDAP))},
			want:    []want{{ActionUnblock, string(account.ReasonDeletedInLDAP), "bob@example.com", "user", active}},
		},
		{
			name: "partial (one-user) sync blocks nobody else and takes nobody over by name",
			snap: Snapshot{
				Users:  []directory.User{func() directory.User { u := du("bob"); u.UUID = "uuid-new"; return u }()},
				Groups: []directory.Group{grp(staffDN, "bob")},
			},
			current: []account.User{},
			byName:  []account.User{stored(2, "bob", "user", "staff")},
			partial: true,
			want:    []want{{ActionSkip, SkipNameTaken, "bob@example.com", "user", ""}},
		},
		{
			name: "group changes move the role and the groups",
			snap: Snapshot{
				Users:  []directory.User{du("bob")},
				Groups: []directory.Group{grp(adminsDN, "bob")},
			},
			current: []account.User{stored(2, "bob", "user", "staff")},
			want:    []want{{ActionUpdate, "", "bob@example.com", "admin", active}},
		},
		{
			name: "AD rule 2: direct member, through the primary group, or not at all",
			dir:  func(d *config.Directory) { *d = adDir() },
			snap: Snapshot{
				Users: []directory.User{
					adUser("direct", 0, adUsersDN, "CN=Staff,CN=Users,"+adBase),
					adUser("primary", 513, "CN=Staff,CN=Users,"+adBase),
					adUser("outside", 0, "CN=Staff,CN=Users,"+adBase),
				},
				Groups: []directory.Group{
					// Staff is in Builtin Users through a group nested in it;
					// Domain Users is in it by its memberOf (the Builtin
					// container lies outside groups_dn, its entry unread).
					{DN: "CN=Staff,CN=Users," + adBase, Name: "Staff", SID: "S-1-5-21-1-2-3-1105"},
					{DN: "CN=Domain Users,CN=Users," + adBase, Name: "Domain Users", SID: "S-1-5-21-1-2-3-513",
						MemberOf: []string{"cn=users,cn=builtin,dc=corp,dc=example,dc=com"}},
					{DN: "CN=Guests group,CN=Users," + adBase, Name: "Guests group", SID: "S-1-5-21-1-2-3-514"},
				},
			},
			want: []want{
				{ActionCreate, "", "direct@corp.example.com", "user", active},
				{ActionCreate, "", "primary@corp.example.com", "user", active},
				{ActionSkip, SkipNotInADUsers, "outside@corp.example.com", "", ""},
			},
		},
		{
			name: "AD rule 2: nested through a group inside Builtin Users; out of scope blocks",
			// default_role set, so only rule 2 can keep "outside" out.
			dir: func(d *config.Directory) { *d = adDir(); d.DefaultRole = "user" },
			snap: Snapshot{
				Users: []directory.User{
					adUser("nested", 0, "CN=Staff,CN=Users,"+adBase),
					adUser("outside", 514),
				},
				Groups: []directory.Group{
					{DN: "CN=Staff,CN=Users," + adBase, Name: "Staff", MemberOf: []string{"CN=Domain Users,CN=Users," + adBase}},
					{DN: "CN=Domain Users,CN=Users," + adBase, Name: "Domain Users", SID: "S-1-5-21-1-2-3-513"},
					{DN: adUsersDN, Name: "Users", Members: []string{"CN=Domain Users,CN=Users," + adBase}},
					{DN: "CN=Guests group,CN=Users," + adBase, Name: "Guests group", SID: "S-1-5-21-1-2-3-514"},
				},
			},
			current: []account.User{{ID: 9, Username: "outside@corp.example.com", Role: "user", State: active,
				Source: account.SourceLDAP, DirectoryID: 1, LDAPUUID: "uuid-outside"}},
			want: []want{
				{ActionCreate, "", "nested@corp.example.com", "user", active},
				{ActionBlock, string(account.ReasonOutOfScope), "outside@corp.example.com", "user", blk},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := ldapDir()
			if tc.dir != nil {
				tc.dir(&dir)
			}
			p := BuildPlan(PlanInput{Dir: dir, Roles: testRoles, Snapshot: tc.snap, Current: tc.current,
				ByName: lookup(tc.byName), Now: testNow, Partial: tc.partial})
			if g := got(p); !slices.Equal(g, tc.want) {
				t.Errorf("changes:\n got %v\nwant %v", g, tc.want)
			}
		})
	}
}

func adUser(name string, primary uint32, memberOf ...string) directory.User {
	return directory.User{DN: "CN=" + name + ",CN=Users," + adBase, UUID: "uuid-" + name, Username: name,
		Email: name + "@corp.example.com", MemberOf: memberOf, PrimaryGroupID: primary}
}

func lookup(users []account.User) func(string) (account.User, bool) {
	return func(n string) (account.User, bool) {
		for _, u := range users {
			if u.Username == n {
				return u, true
			}
		}
		return account.User{}, false
	}
}

// TestPlanRecords checks the records a plan writes, beyond the action.
func TestPlanRecords(t *testing.T) {
	snap := Snapshot{
		Users:  []directory.User{du("bob"), du("frank")},
		Groups: []directory.Group{grp(staffDN, "bob", "frank"), grp(adminsDN, "frank"), grp(othersDN, "frank")},
	}
	local := account.User{ID: 40, Username: "bob@example.com", Role: "admin", State: active,
		Source: account.SourceLocal, PasswordHash: "$argon2id$v=19$secret", Email: "b@old"}
	p := BuildPlan(PlanInput{Dir: ldapDir(), Roles: testRoles, Snapshot: snap,
		ByName: lookup([]account.User{local}), Now: testNow})

	conv := p.Changes[0]
	if conv.Action != ActionConvertLocal || conv.Before.ID != 40 {
		t.Fatalf("conversion: %+v", conv)
	}
	a := conv.After
	if a.ID != 40 || a.Source != account.SourceLDAP || a.PasswordHash != "" || a.DirectoryID != 1 ||
		a.LDAPDN != dn("bob") || a.LDAPUUID != "uuid-bob" || a.Role != "user" || a.Email != "bob@example.com" {
		t.Errorf("converted record: %+v", a)
	}
	if conv.Fields["password_hash"] != [2]string{"set", ""} || strings.Contains(fmt.Sprint(conv.Fields), "argon2") {
		t.Errorf("audit fields must say the hash went, without it: %v", conv.Fields)
	}

	cr := p.Changes[1].After
	if !slices.Equal(cr.Groups, []string{"admins", "staff"}) || cr.Role != "admin" || cr.DisplayName != "FRANK" ||
		!cr.LastSyncedAt.Equal(testNow) || !cr.CreatedAt.Equal(testNow) {
		t.Errorf("created record: %+v", cr)
	}

	// A rename records the old and new name for the audit log.
	cur := []account.User{stored(2, "bob", "user", "staff")}
	snap2 := Snapshot{Users: []directory.User{func() directory.User {
		u := du("bob")
		u.Username, u.Email = "robert", "robert@example.com"
		return u
	}()}, Groups: []directory.Group{grp(staffDN, "bob")}}
	p2 := BuildPlan(PlanInput{Dir: ldapDir(), Roles: testRoles, Snapshot: snap2, Current: cur, Now: testNow})
	f := p2.Changes[0].Fields
	if f["username"] != [2]string{"bob@example.com", "robert@example.com"} || f["email"] != [2]string{"bob@example.com", "robert@example.com"} || len(f) != 2 {
		t.Errorf("rename fields: %v", f)
	}
	if p2.Changes[0].After.ID != 2 {
		t.Errorf("rename must keep the id: %+v", p2.Changes[0].After)
	}
}

// TestPlanUnchangedWritesNothing: a second plan over the result of the
// first has zero writes (the issue's "a sync where nothing changed writes
// nothing but the run record").
func TestPlanUnchangedWritesNothing(t *testing.T) {
	snap := Snapshot{
		Users: []directory.User{du("alice"), du("bob"), disabled(du("carol")), du("dave"), du("erin")},
		Groups: []directory.Group{grp(adminsDN, "alice"), grp(staffDN, "bob", "carol", devsDN),
			grp(devsDN, "dave"), grp(othersDN, "erin")},
	}
	in := PlanInput{Dir: ldapDir(), Roles: testRoles, Snapshot: snap, Now: testNow}
	first := BuildPlan(in)
	if first.Writes() != 4 {
		t.Fatalf("first plan writes %d, want 4: %v", first.Writes(), got(first))
	}
	var cur []account.User
	for i, c := range first.Changes {
		if c.Action.Writes() {
			u := *c.After
			u.ID = uint64(i + 1)
			cur = append(cur, u)
		}
	}
	in.Current = cur
	second := BuildPlan(in)
	if second.Writes() != 0 {
		t.Errorf("re-plan writes %d: %v", second.Writes(), got(second))
	}
	if s := second.Summary(); s["unchanged"] != 4 || s["skip"] != 1 {
		t.Errorf("summary %v", s)
	}
}

func TestPlanCheck(t *testing.T) {
	current := func(n int) []account.User {
		var out []account.User
		for i := range n {
			out = append(out, stored(uint64(i+1), fmt.Sprintf("u%02d", i), "user", "staff"))
		}
		return out
	}
	// keep the first k of n users in the directory.
	snapOf := func(n, k int) Snapshot {
		s := Snapshot{Groups: []directory.Group{grp(staffDN)}}
		for i := range k {
			name := fmt.Sprintf("u%02d", i)
			s.Users = append(s.Users, du(name))
			s.Groups[0].Members = append(s.Groups[0].Members, dn(name))
		}
		_ = n
		return s
	}
	tests := []struct {
		name     string
		current  []account.User
		snap     Snapshot
		frac     float64
		force    bool
		blocks   int
		err      error
		writeCnt int
	}{
		{"empty read refused", current(5), Snapshot{}, 0.2, false, 5, ErrEmptyRead, 5},
		{"empty read forced", current(5), Snapshot{}, 0.2, true, 5, nil, 5},
		{"60% deleted refused", current(10), snapOf(10, 4), 0.2, false, 6, ErrTooManyBlocks, 6},
		{"60% deleted forced", current(10), snapOf(10, 4), 0.2, true, 6, nil, 6},
		{"exactly the fraction passes", current(10), snapOf(10, 8), 0.2, false, 2, nil, 2},
		{"one more than the fraction refused", current(10), snapOf(10, 7), 0.2, false, 3, ErrTooManyBlocks, 3},
		{"already blocked users do not count", append(current(10),
			with(stored(90, "gone1", "user"), blocked(account.ReasonOutOfScope)),
			with(stored(91, "gone2", "user"), blocked(account.ReasonOutOfScope))),
			snapOf(10, 10), 0.2, false, 0, nil, 2},
		{"fraction 1 allows blocking everyone but an empty read", current(4), snapOf(4, 1), 1, false, 3, nil, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := BuildPlan(PlanInput{Dir: ldapDir(), Roles: testRoles, Snapshot: tc.snap, Current: tc.current, Now: testNow})
			if p.BlocksOfActive() != tc.blocks {
				t.Errorf("BlocksOfActive = %d, want %d", p.BlocksOfActive(), tc.blocks)
			}
			if p.Writes() != tc.writeCnt {
				t.Errorf("Writes = %d, want %d (%v)", p.Writes(), tc.writeCnt, got(p))
			}
			err := p.Check(tc.frac, tc.force)
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Errorf("Check = %v, want %v", err, tc.err)
			}
		})
	}
}

func TestNormalizeDN(t *testing.T) {
	tests := []struct{ a, b string }{
		{"CN=Staff, OU=Groups, DC=Example, DC=Com", "cn=staff,ou=groups,dc=example,dc=com"},
		{`cn=Smith\, John,ou=users,dc=x`, `CN=smith\2c john, OU=Users,DC=X`},
		{`cn=a+uid=b,dc=x`, `UID=B+CN=A,dc=x`},
	}
	for _, tc := range tests {
		if normalizeDN(tc.a) != normalizeDN(tc.b) {
			t.Errorf("%q and %q differ: %q vs %q", tc.a, tc.b, normalizeDN(tc.a), normalizeDN(tc.b))
		}
	}
	if normalizeDN("cn=a,dc=x") == normalizeDN("cn=b,dc=x") {
		t.Error("different DNs compare equal")
	}
}

// A user's memberOf may name a group whose entry the read did not return
// (outside groups_dn) but which is itself a member of a mapped group that
// was read: the user reaches that group's role. Users are placed in the
// group graph one at a time as they are read, after the groups, so this
// path has no node for the unread group.
func TestPlanMemberOfUnreadNestedGroup(t *testing.T) {
	const contractors = "cn=contractors,ou=external," + base
	for _, attr := range []string{"memberOf", "cn"} {
		t.Run(attr, func(t *testing.T) {
			dir := ldapDir()
			dir.GroupNameAttribute = attr
			u := du("zoe")
			u.MemberOf = []string{"CN=Contractors, OU=External, DC=Example, DC=Com"}
			other := du("yann")
			other.MemberOf = []string{"cn=nobody,ou=external," + base}
			p := BuildPlan(PlanInput{Dir: dir, Roles: testRoles, Now: testNow, Snapshot: Snapshot{
				Users:  []directory.User{u, other},
				Groups: []directory.Group{grp(adminsDN, contractors)},
			}})
			w := []want{
				{ActionCreate, "", "zoe@example.com", "admin", account.StateActive},
				{ActionSkip, SkipNoMappedGroup, "yann@example.com", "", ""},
			}
			if g := got(p); !slices.Equal(g, w) {
				t.Errorf("plan:\n got %v\nwant %v", g, w)
			}
			if g := p.Changes[0].After.Groups; !slices.Equal(g, []string{"admins"}) {
				t.Errorf("groups = %v", g)
			}
		})
	}
}

// The planner keeps entries in chunks that never move; a read several
// chunks long must come out whole and in read order.
func TestPlanManyEntriesKeepOrder(t *testing.T) {
	const n = 3*maxChunk + 17
	users := make([]directory.User, n)
	for i := range users {
		users[i] = du(fmt.Sprintf("u%05d", i))
	}
	p := BuildPlan(PlanInput{Dir: ldapDir(), Roles: testRoles, Now: testNow,
		Snapshot: Snapshot{Users: users, Groups: []directory.Group{grp(staffDN, "u00000", fmt.Sprintf("u%05d", n-1))}}})
	if len(p.Changes) != n || p.DirectoryUsers != n {
		t.Fatalf("%d changes, %d directory users; want %d", len(p.Changes), p.DirectoryUsers, n)
	}
	for i, c := range p.Changes {
		if want := fmt.Sprintf("u%05d", i); c.After.LDAPUUID != "uuid-"+want {
			t.Fatalf("change %d is %s, want %s", i, c.After.LDAPUUID, want)
		}
	}
	if p.Changes[0].Action != ActionCreate || p.Changes[n-1].Action != ActionCreate || p.Changes[1].Action != ActionSkip {
		t.Errorf("first/last/second: %v %v %v", p.Changes[0].Action, p.Changes[n-1].Action, p.Changes[1].Action)
	}
}
