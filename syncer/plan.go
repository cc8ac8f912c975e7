// Package syncer keeps the store's users in step with the LDAP directories
// (SPEC §4). A sync reads a complete snapshot of one directory, turns it into
// a plan with the pure BuildPlan function, checks the plan against the safety
// rules, and applies it in batched store transactions with an audit entry per
// change. Preview, dry run and apply share the one planner.
//
// Choices where the SPEC is silent:
//   - An admin-blocked user (rule 10) keeps state and reason whatever the
//     directory says, but email, display name, DN, role and groups still
//     follow the directory, so the record is right when the block is lifted.
//   - LastSyncedAt is set only on users a sync changes: an unchanged
//     directory writes nothing but the run record (issue 3), and bumping a
//     timestamp on 100k users would rewrite all of them each time.
//   - A naming conflict (a rename onto a name in use, two entries with one
//     mail under legacy naming) skips the entry and leaves its store user as
//     it is; only the scope rules (1, 2, 5 and user_filter of 7) block a
//     seen user out_of_scope.
//   - A user's name held by a user of another directory is skipped, never
//     taken over (rule 10), also when that directory was removed.
//   - Users that a user_filter excludes are read all the same, marked
//     directory.User.OutOfScope, and skipped with SkipUserFilter: a scope
//     rule, so their store user is blocked out_of_scope (not
//     deleted_in_ldap) and unblocked when they match the filter again.
//     They are not counted in Plan.DirectoryUsers, so a user_filter that
//     matches nobody is still an empty read, refused unless forced.
//   - A dry run neither joins a running sync nor is joined: it must show
//     the plan, and it writes only its run record.
package syncer

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/directory"
)

// Snapshot is one complete, error-free read of a directory.
type Snapshot struct {
	Users  []directory.User
	Groups []directory.Group
}

// Action is what a change does.
type Action string

const (
	// ActionCreate makes a new store user (rules 3 and 6).
	ActionCreate Action = "create"
	// ActionConvertLocal turns a local user of the same name into this
	// directory's user and deletes the local password hash (rule 4).
	ActionConvertLocal Action = "convert_local"
	// ActionUpdate changes fields, role, groups or the name (a rename in
	// LDAP: same uuid, new name).
	ActionUpdate Action = "update"
	// ActionBlock makes an active user blocked (deleted_in_ldap,
	// out_of_scope) or blocked_in_ldap (rules 7 and 8).
	ActionBlock Action = "block"
	// ActionUnblock makes a user blocked by an earlier sync active again.
	ActionUnblock Action = "unblock"
	// ActionSkip: the directory entry is not synced (Reason says why).
	ActionSkip Action = "skip"
	// ActionUnchanged: nothing to write. Kept in the plan so the preview
	// lists every directory user.
	ActionUnchanged Action = "unchanged"
	// ActionAdopt takes over a user whose directory was removed (rule 9:
	// blocked directory_removed) when this directory now serves their
	// name: a directory renamed in the config file, or replaced by a new
	// connection to the same domain, must not lock its people out.
	ActionAdopt Action = "adopt"
)

// Writes reports whether applying the action writes the store.
func (a Action) Writes() bool { return a != ActionSkip && a != ActionUnchanged }

// Skip reasons (Change.Reason of ActionSkip).
const (
	// SkipNoEmail: legacy naming and no mail (rule 1).
	SkipNoEmail = "no_email"
	// SkipNoUsername: the login attribute is empty, so no name can be built.
	SkipNoUsername = "no_username"
	// SkipNotInADUsers: AD user outside CN=Users,CN=Builtin (rule 2).
	SkipNotInADUsers = "not_in_ad_users"
	// SkipNoMappedGroup: in no mapped group and no default_role (rule 5).
	SkipNoMappedGroup = "no_mapped_group"
	// SkipUserFilter: the entry does not match the directory's user_filter
	// (rule 7).
	SkipUserFilter = "user_filter"
	// SkipNameTakenOtherDirectory: the name belongs to a user of another
	// directory, which sync never touches (rule 10).
	SkipNameTakenOtherDirectory = "name_taken_by_other_directory"
	// SkipNameTaken: the name belongs to another user of this store that
	// this entry cannot claim (a rename onto a name in use, or, in a
	// one-user sync, a same-directory user with another uuid).
	SkipNameTaken = "name_taken"
	// SkipDuplicateName: several entries of this read want the same name
	// (legacy naming with a shared mail address); none is given it unless
	// one already holds it.
	SkipDuplicateName = "duplicate_name"
	// SkipDuplicateUUID: two entries carry the same immutable id.
	SkipDuplicateUUID = "duplicate_uuid"
)

// scopeSkip reports whether a skip is a rule putting the user out of scope
// (their store user is blocked out_of_scope) rather than a naming conflict
// (their store user is left as it is until the conflict is resolved).
func scopeSkip(reason string) bool {
	switch reason {
	case SkipNoEmail, SkipNoUsername, SkipNotInADUsers, SkipNoMappedGroup, SkipUserFilter:
		return true
	}
	return false
}

// Change is one planned change of one user.
type Change struct {
	Action Action
	// Reason: for ActionBlock the new block reason (deleted_in_ldap,
	// out_of_scope) or "blocked_in_ldap"; for ActionSkip the skip reason;
	// for ActionUnblock the reason that is lifted.
	Reason string
	// Username is the user's name after the change (for a skip without a
	// buildable name, the raw login attribute).
	Username string
	// Before is the store user as it is (nil for create and for skips of
	// entries with no store user).
	Before *account.User
	// After is the desired record. For skips it carries what is known of
	// the entry (name, email, DN, uuid, role) for the preview. A pointer so
	// that a change is a few words: a first sync of 100k users appends
	// 100k of them, and a by-value record made every growth of the list
	// copy tens of MiB.
	After *account.User
	// Fields lists the changed fields, name → [old, new], for the audit log
	// (nil for creates: the whole record is new; apply records it).
	Fields map[string][2]string
}

// PlanInput is everything the planner looks at. It does no I/O.
// Syncer.plan gives Dir, Roles and the snapshot to a planner as the
// directory is read, and the rest to its finish.
type PlanInput struct {
	// Dir is the directory's settings with defaults applied and ID set;
	// Naming already reflects a migration override.
	Dir config.Directory
	// Roles are the platform roles, highest first.
	Roles []string
	// Snapshot is a complete read of the directory.
	Snapshot Snapshot
	// Current are this directory's store users (users of other directories
	// in it are ignored: rule 10).
	Current []account.User
	// ByName finds any store user by canonical name (for local users to
	// convert and for names owned by other directories). May be nil.
	ByName func(name string) (account.User, bool)
	// Now stamps UpdatedAt, CreatedAt and LastSyncedAt of changed users.
	Now time.Time
	// Partial: the snapshot holds only some of the directory's users (the
	// one-user sync at login). Nobody outside the snapshot is blocked, and
	// a same-directory user found only by name is not taken over, since
	// its uuid might belong to an entry this read did not see.
	Partial bool
	// OmitUnchanged leaves unchanged users out of Changes (they are still
	// counted in Summary): a real sync of a large directory does not need
	// a row for each of them, the preview does.
	OmitUnchanged bool
}

// Plan is the list of changes for one directory.
type Plan struct {
	DirectoryID uint64
	// Changes holds one entry per directory user (including skips and
	// unchanged users) followed by the blocks of store users the directory
	// no longer returns.
	Changes []Change
	// DirectoryUsers is the number of entries the read returned that match
	// the user filters (OutOfScope entries are not counted): the base of
	// the empty-read check, and what the run records.
	DirectoryUsers int
	// ActiveUsers is the number of this directory's store users that are
	// active before the plan: the base of the max_block_fraction check.
	ActiveUsers int
	// Unchanged counts the unchanged users left out by OmitUnchanged.
	Unchanged int
}

// Summary counts the changes by action.
func (p *Plan) Summary() map[string]int {
	out := map[string]int{}
	for i := range p.Changes {
		out[string(p.Changes[i].Action)]++
	}
	if p.Unchanged > 0 {
		out[string(ActionUnchanged)] += p.Unchanged
	}
	return out
}

// Writes is the number of changes that write the store.
func (p *Plan) Writes() int {
	n := 0
	for i := range p.Changes {
		if p.Changes[i].Action.Writes() {
			n++
		}
	}
	return n
}

// BlocksOfActive is the number of currently active users the plan blocks.
func (p *Plan) BlocksOfActive() int {
	n := 0
	for i := range p.Changes {
		c := &p.Changes[i]
		if c.Action == ActionBlock && c.Before != nil && c.Before.State == account.StateActive {
			n++
		}
	}
	return n
}

// Errors of Check. Both are refusals a forced sync overrides.
var (
	// ErrEmptyRead: the directory returned no users at all, which is far
	// more often a wrong users_dn or filter than an emptied directory.
	ErrEmptyRead = errors.New("directory returned no users")
	// ErrTooManyBlocks: the plan blocks more than max_block_fraction of the
	// directory's active users.
	ErrTooManyBlocks = errors.New("plan blocks too many active users")
)

// Check applies the safety rules of SPEC §4 to a plan built from a full
// read: an empty read, or more blocks of active users than maxFraction of
// them, is refused unless force.
func (p *Plan) Check(maxFraction float64, force bool) error {
	if force {
		return nil
	}
	if p.DirectoryUsers == 0 {
		return ErrEmptyRead
	}
	if b := p.BlocksOfActive(); float64(b) > maxFraction*float64(p.ActiveUsers) {
		return fmt.Errorf("%w: %d of %d active users (max_block_fraction %g)",
			ErrTooManyBlocks, b, p.ActiveUsers, maxFraction)
	}
	return nil
}

// entryResult is the first pass over a directory entry.
type entryResult struct {
	name    string
	skip    string
	role    string
	groups  []string
	dupUUID bool // a second entry with an immutable id already seen
}

// entry is one directory user with its first pass.
type entry struct {
	u directory.User
	r entryResult
}

// maxChunk bounds the planner's entry chunks: entries are appended to
// chunks that never move, so a 100k-entry read is never copied to grow.
const maxChunk = 4096

// planner is BuildPlan in two steps, so that the first pass over each entry
// (its name, the scope rules, its role) can run while the directory is
// still being read: Syncer.plan adds entries as pages arrive, BuildPlan
// adds a Snapshot's. Both end in finish, so the sync, the dry run and the
// preview are the one plan.
type planner struct {
	dir        config.Directory
	mem        *membership
	chunks     [][]entry
	n          int
	dirUsers   int            // entries not OutOfScope
	nameCount  map[string]int // names wanted by admitted entries
	inSnapshot map[string]bool
}

// newPlanner starts a plan of dir from its groups (all of them: the group
// graph must be whole before any user is placed in it).
func newPlanner(dir config.Directory, roles []string, groups []directory.Group) *planner {
	return &planner{
		dir:        dir,
		mem:        newMembership(dir, roles, groups),
		nameCount:  map[string]int{},
		inSnapshot: map[string]bool{},
	}
}

// add runs the first pass over one entry: names, the scope rules (1, 2, 5,
// user_filter) and the role. Entries must come in read order (the first
// of two entries with one uuid wins).
func (p *planner) add(u directory.User) {
	last := len(p.chunks) - 1
	if last < 0 || len(p.chunks[last]) == cap(p.chunks[last]) {
		size := 64
		if last >= 0 {
			size = min(2*cap(p.chunks[last]), maxChunk)
		}
		p.chunks = append(p.chunks, make([]entry, 0, size))
		last++
	}
	p.chunks[last] = append(p.chunks[last], entry{u: u})
	e := &p.chunks[last][len(p.chunks[last])-1]
	p.n++
	p.pass1(&e.u, &e.r)
	// memberOf was read for this pass only; on AD and FreeIPA it is much
	// of what a big directory's entries hold.
	e.u.MemberOf = nil
}

func (p *planner) pass1(u *directory.User, r *entryResult) {
	dir := &p.dir
	if !u.OutOfScope {
		p.dirUsers++
	}
	if u.UUID != "" {
		r.dupUUID = p.inSnapshot[u.UUID]
		p.inSnapshot[u.UUID] = true
	}
	name, ok := directory.CanonicalName(*dir, *u)
	r.name = name
	if u.OutOfScope {
		// First: outside user_filter, the other rules do not matter,
		// and a filter leaving out most of a big directory should not
		// cost a group walk per excluded entry.
		r.skip = SkipUserFilter
		return
	}
	switch {
	case !ok && dir.Naming == config.NamingEmail:
		r.skip = SkipNoEmail
	case !ok:
		r.skip = SkipNoUsername
	}
	b := p.mem.of(u)
	r.role, r.groups = p.mem.roleAndGroups(b)
	if r.skip == "" && !p.mem.inADUsers(b) {
		r.skip = SkipNotInADUsers
	}
	if r.role == "" {
		r.role = dir.DefaultRole
		if r.skip == "" && r.role == "" {
			r.skip = SkipNoMappedGroup
		}
	}
	if r.skip == "" && !r.dupUUID {
		p.nameCount[name]++
	}
}

// BuildPlan turns a snapshot and the store's users into a plan (SPEC §4
// rules 1–10). It is deterministic and pure.
func BuildPlan(in PlanInput) Plan {
	p := newPlanner(in.Dir, in.Roles, in.Snapshot.Groups)
	for _, u := range in.Snapshot.Users {
		p.add(u)
	}
	return p.finish(in)
}

// finish matches every added entry to the store's users and decides the
// changes. It uses in's Current, ByName, Now, Partial and OmitUnchanged;
// Dir, Roles and the entries were given to the planner.
func (p *planner) finish(in PlanInput) Plan {
	dir := &p.dir
	plan := Plan{DirectoryID: dir.ID, DirectoryUsers: p.dirUsers}

	// Index this directory's store users. Anything else in Current is
	// ignored: sync never touches another directory's users (rule 10).
	cur := make([]*account.User, 0, len(in.Current))
	byUUID := make(map[string]int, len(in.Current))
	byName := make(map[string]int, len(in.Current))
	for i := range in.Current {
		u := &in.Current[i]
		if u.Source != account.SourceLDAP || u.DirectoryID != dir.ID {
			continue
		}
		idx := len(cur)
		cur = append(cur, u)
		if u.LDAPUUID != "" {
			byUUID[u.LDAPUUID] = idx
		}
		byName[u.Username] = idx
		if u.State == account.StateActive {
			plan.ActiveUsers++
		}
	}
	claimed := make([]bool, len(cur)) // store user matched by an entry

	// Every entry becomes a change unless unchanged ones are left out; with
	// no store users yet (a first sync) nobody is unchanged.
	if !in.OmitUnchanged || len(cur) == 0 {
		plan.Changes = make([]Change, 0, p.n+len(cur)/8)
	}

	// Pass 2: match every entry to a store user and decide its change.
	for _, chunk := range p.chunks {
		for i := range chunk {
			if c, ok := p.pass2(&chunk[i].u, &chunk[i].r, in, cur, byUUID, byName, claimed); ok {
				plan.add(c)
			} else {
				plan.Unchanged++
			}
		}
	}

	// Pass 3: store users of this directory the read did not return
	// (rule 7). A partial read proves nothing about the others.
	if !in.Partial {
		for j, su := range cur {
			if claimed[j] || su.BlockReason == account.ReasonAdmin {
				continue
			}
			if su.State == account.StateBlocked && su.BlockReason == account.ReasonDeletedInLDAP {
				continue
			}
			plan.add(block(su, account.StateBlocked, account.ReasonDeletedInLDAP, in.Now))
		}
	}
	return plan
}

// pass2 decides one entry's change; false means unchanged and left out
// (OmitUnchanged).
func (p *planner) pass2(u *directory.User, r *entryResult, in PlanInput, cur []*account.User,
	byUUID, byName map[string]int, claimed []bool) (Change, bool) {
	dir := &p.dir
	// Match by (directory, uuid) first, then by name within this
	// directory: an entry deleted and re-created under the same name
	// (new uuid) takes its old store user over, unless that user's uuid
	// is still in the read (then the name is only briefly shared during
	// a rename and the next sync sorts it out).
	var before *account.User
	var idx = -1
	if r.dupUUID {
		return skip(u, r, SkipDuplicateUUID, nil), true
	}
	if u.UUID != "" {
		if j, ok := byUUID[u.UUID]; ok {
			idx, before = j, cur[j]
		}
	}
	if before != nil {
		claimed[idx] = true
	}

	if r.skip != "" {
		return scopeChange(u, r, before, in.Now), true
	}
	if p.nameCount[r.name] > 1 && (before == nil || before.Username != r.name) {
		return skip(u, r, SkipDuplicateName, before), true
	}

	var convert, adopt *account.User
	if before == nil || before.Username != r.name {
		// The name is new for this entry: who holds it now?
		holder, holderIdx, found := lookupName(r.name, cur, byName, in.ByName)
		switch {
		case !found:
		case holder.Source == account.SourceLocal && before == nil:
			h := holder
			convert = &h
		case holder.Source == account.SourceLocal:
			// A renamed directory user cannot merge into a local one.
			return skip(u, r, SkipNameTaken, before), true
		case holder.DirectoryID != dir.ID && before == nil && holder.Source == account.SourceLDAP &&
			holder.State == account.StateBlocked && holder.BlockReason == account.ReasonDirectoryRemoved:
			// Rule 9's users belong to no directory any more; rule 10
			// protects users of directories that still exist.
			h := holder
			adopt = &h
		case holder.DirectoryID != dir.ID:
			return skip(u, r, SkipNameTakenOtherDirectory, before), true
		case before == nil && holderIdx >= 0 && !claimed[holderIdx] &&
			!in.Partial && !p.inSnapshot[holder.LDAPUUID]:
			// Same directory, its entry gone: re-created entry.
			idx, before = holderIdx, cur[holderIdx]
			claimed[idx] = true
		default:
			return skip(u, r, SkipNameTaken, before), true
		}
	}
	if adopt != nil {
		before = adopt
	}
	c := admit(dir, u, r, before, convert, in.Now)
	if adopt != nil {
		c.Action, c.Reason = ActionAdopt, string(account.ReasonDirectoryRemoved)
	}
	if c.Action == ActionUnchanged && in.OmitUnchanged {
		return Change{}, false
	}
	return c, true
}

func (p *Plan) add(c Change) { p.Changes = append(p.Changes, c) }

// lookupName finds the store user holding name: this directory's users
// first (cheap, and authoritative for them), then the whole store.
func lookupName(name string, cur []*account.User, byName map[string]int,
	all func(string) (account.User, bool)) (account.User, int, bool) {
	if j, ok := byName[name]; ok {
		return *cur[j], j, true
	}
	if all == nil {
		return account.User{}, -1, false
	}
	u, ok := all(name)
	if !ok {
		return account.User{}, -1, false
	}
	return u, -1, true
}

// entryUser is what the directory says about an entry, as a store record.
func entryUser(u *directory.User, r *entryResult) *account.User {
	name := r.name
	if name == "" {
		name = u.Username
	}
	return &account.User{
		Username:    name,
		Email:       u.Email,
		DisplayName: u.DisplayName,
		Role:        r.role,
		Groups:      r.groups,
		Source:      account.SourceLDAP,
		LDAPDN:      u.DN,
		LDAPUUID:    u.UUID,
	}
}

func skip(u *directory.User, r *entryResult, reason string, before *account.User) Change {
	after := entryUser(u, r)
	if reason == SkipNoMappedGroup || reason == SkipNotInADUsers || reason == SkipUserFilter {
		after.Role = ""
	}
	if before != nil {
		after.ID = before.ID
	}
	return Change{Action: ActionSkip, Reason: reason, Username: after.Username, Before: before, After: after}
}

// scopeChange handles an entry a scope rule skips: its store user, if any,
// is blocked out_of_scope (rule 7), unless an admin block is in place
// (rule 10) or it is already blocked that way.
func scopeChange(u *directory.User, r *entryResult, before *account.User, now time.Time) Change {
	if before == nil || before.BlockReason == account.ReasonAdmin ||
		(before.State == account.StateBlocked && before.BlockReason == account.ReasonOutOfScope) {
		return skip(u, r, r.skip, before)
	}
	c := block(before, account.StateBlocked, account.ReasonOutOfScope, now)
	if c.Fields == nil {
		c.Fields = map[string][2]string{}
	}
	c.Fields["skip_reason"] = [2]string{"", r.skip}
	return c
}

func block(before *account.User, st account.State, reason account.BlockReason, now time.Time) Change {
	after := *before
	after.State, after.BlockReason = st, reason
	if st != account.StateBlockedInLDAP {
		after.LDAPStatus = account.LDAPStatusNone
	}
	after.UpdatedAt, after.LastSyncedAt = now, now
	r := string(reason)
	if st == account.StateBlockedInLDAP {
		r = string(st)
	}
	return Change{Action: ActionBlock, Reason: r, Username: before.Username, Before: before,
		After: &after, Fields: diff(before, &after)}
}

// admit plans an entry the rules let in: create it, convert the local user
// of that name, or bring its store user up to date.
func admit(dir *config.Directory, u *directory.User, r *entryResult,
	before, convert *account.User, now time.Time) Change {
	want := entryUser(u, r)
	want.DirectoryID = dir.ID
	// Rule 8 and SPEC §13: the directory's own state.
	want.State, want.LDAPStatus = directoryState(u, now)

	switch {
	case convert != nil:
		after := *convert
		copyDirectoryFields(&after, want)
		// Rule 4: from now on the directory holds the password.
		after.PasswordHash = ""
		if after.BlockReason != account.ReasonAdmin {
			after.State, after.BlockReason, after.LDAPStatus = want.State, account.ReasonNone, want.LDAPStatus
		}
		after.UpdatedAt, after.LastSyncedAt = now, now
		f := diff(convert, &after)
		if f == nil {
			f = map[string][2]string{}
		}
		f["password_hash"] = [2]string{"set", ""}
		return Change{Action: ActionConvertLocal, Username: after.Username, Before: convert, After: &after, Fields: f}
	case before == nil:
		// Rules 3 and 6: an entry without a store user is created, also
		// when an admin deleted the previous one.
		want.CreatedAt, want.UpdatedAt, want.LastSyncedAt = now, now, now
		return Change{Action: ActionCreate, Username: want.Username, After: want}
	}

	after := *before
	copyDirectoryFields(&after, want)
	action := ActionUpdate
	reason := ""
	// Rule 10: an admin block stays whatever the directory says; the
	// other fields still follow the directory so the record is right the
	// day the admin lifts the block.
	if before.BlockReason != account.ReasonAdmin {
		after.State, after.BlockReason, after.LDAPStatus = want.State, account.ReasonNone, want.LDAPStatus
		switch {
		case before.State != account.StateActive && after.State == account.StateActive:
			action, reason = ActionUnblock, string(before.BlockReason)
			if reason == "" {
				reason = string(before.State)
			}
		case after.State == account.StateBlockedInLDAP && before.State != account.StateBlockedInLDAP:
			action, reason = ActionBlock, string(account.StateBlockedInLDAP)
		}
	}
	f := diff(before, &after)
	if f == nil {
		return Change{Action: ActionUnchanged, Username: after.Username, Before: before, After: &after}
	}
	after.UpdatedAt, after.LastSyncedAt = now, now
	return Change{Action: action, Reason: reason, Username: after.Username, Before: before, After: &after, Fields: f}
}

// directoryState is the store state the directory's account state asks
// for (SPEC §13): disabled, then expired, each blocked_in_ldap with its
// ldap_status; anything else (a temporary lockout, a password that has
// expired or must change) leaves the user active, for the login to answer.
// Disabled wins over expired: an account that is both reads disabled, and
// turns expired (still blocked) when re-enabled.
func directoryState(u *directory.User, now time.Time) (account.State, account.LDAPStatus) {
	switch {
	case u.Disabled:
		return account.StateBlockedInLDAP, account.LDAPStatusDisabled
	case !u.AccountExpiresAt.IsZero() && !now.Before(u.AccountExpiresAt):
		return account.StateBlockedInLDAP, account.LDAPStatusExpired
	}
	return account.StateActive, account.LDAPStatusNone
}

// copyDirectoryFields sets the fields the directory owns.
func copyDirectoryFields(dst, src *account.User) {
	dst.Username = src.Username
	dst.Email = src.Email
	dst.DisplayName = src.DisplayName
	dst.Role = src.Role
	dst.Groups = src.Groups
	dst.Source = account.SourceLDAP
	dst.DirectoryID = src.DirectoryID
	dst.LDAPDN = src.LDAPDN
	dst.LDAPUUID = src.LDAPUUID
}

// diff lists the fields that differ between two records (nil when none:
// an unchanged directory yields no fields for anyone, hence no writes, and
// no allocation per user either).
func diff(a, b *account.User) map[string][2]string {
	var f map[string][2]string
	add := func(k, x, y string) {
		if x != y {
			if f == nil {
				f = make(map[string][2]string, 4)
			}
			f[k] = [2]string{x, y}
		}
	}
	add("username", a.Username, b.Username)
	add("email", a.Email, b.Email)
	add("display_name", a.DisplayName, b.DisplayName)
	add("role", a.Role, b.Role)
	if !slices.Equal(a.Groups, b.Groups) {
		add("groups", joinGroups(a.Groups), joinGroups(b.Groups))
	}
	add("state", string(a.State), string(b.State))
	add("block_reason", string(a.BlockReason), string(b.BlockReason))
	add("ldap_status", string(a.LDAPStatus), string(b.LDAPStatus))
	add("source", string(a.Source), string(b.Source))
	if a.DirectoryID != b.DirectoryID {
		add("directory_id", fmt.Sprint(a.DirectoryID), fmt.Sprint(b.DirectoryID))
	}
	add("ldap_dn", a.LDAPDN, b.LDAPDN)
	add("ldap_uuid", a.LDAPUUID, b.LDAPUUID)
	return f
}

func joinGroups(g []string) string { return strings.Join(g, ",") }
