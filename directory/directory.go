// Package directory is ldapgate's LDAP client: the one small interface the
// syncer and the login path use, and its go-ldap implementation (dialing with
// failover and TLS, a bounded service-account pool, paged streaming reads,
// user binds on their own connections), plus the naming rules of SPEC §3.
package directory

import (
	"context"
	"errors"
)

// Sentinel errors callers branch on. Implementations wrap them with %w and
// context; use errors.Is.
var (
	// ErrBadCredentials: wrong password, empty password, or no such user
	// (the login path must not reveal which). LDAP result 49.
	ErrBadCredentials = errors.New("invalid credentials")
	// ErrUserNotFound is wrapped together with ErrBadCredentials when the
	// login name matched no entry, so logs can tell while answers cannot.
	ErrUserNotFound = errors.New("user not found")
	// ErrAccountDisabled: the directory refused the bind because the account
	// is disabled or inactivated (AD 49/data 533, 389-ds result 53).
	ErrAccountDisabled = errors.New("account disabled in directory")
	// ErrAccountLocked: temporarily locked (AD 49/data 775).
	ErrAccountLocked = errors.New("account locked in directory")
	// ErrUnavailable: no server could be reached, a connection was lost, the
	// server was busy/unavailable, or an operation timed out.
	ErrUnavailable = errors.New("directory unavailable")
	// ErrIncompleteRead: the server answered, but not with everything: a
	// size/time/admin limit, a referral, a missing page. The syncer must not
	// act on such a read.
	ErrIncompleteRead = errors.New("directory read incomplete")
)

// User is a directory user entry reduced to what ldapgate needs. Attribute
// names are already resolved through the directory's type defaults.
type User struct {
	// DN as returned by the server.
	DN string
	// UUID is the immutable id (entryUUID, objectGUID as a GUID string,
	// ipaUniqueID or nsUniqueId).
	UUID string
	// Username is the login attribute's value (uid / sAMAccountName), as stored.
	Username string
	// Email is the email attribute's first value.
	Email string
	// DisplayName is the display name attribute's first value.
	DisplayName string
	// Disabled applies the type's rule (AD userAccountControl bit 0x2,
	// FreeIPA nsAccountLock TRUE, OpenLDAP pwdAccountLockedTime present) or
	// the directory's disabled_filter.
	Disabled bool
	// OutOfScope: the entry matches user_object_filter but not the
	// directory's user_filter. Such users are read, not left out, so sync
	// can tell "left the filter" (blocked out_of_scope, SPEC §4 rule 7)
	// from "deleted" (deleted_in_ldap). Always false without a user_filter.
	OutOfScope bool
	// MemberOf lists group DNs from the user's memberOf attribute (read when
	// group_name_attribute is memberOf, or on AD/FreeIPA).
	MemberOf []string
	// PrimaryGroupID is AD's primaryGroupID (0 elsewhere). The primary group
	// never appears in memberOf; it is matched by the group's SID RID.
	PrimaryGroupID uint32
}

// Group is a directory group entry.
type Group struct {
	// DN as returned by the server.
	DN string
	// Name is the group's cn.
	Name string
	// Members are member/uniqueMember DNs (all of them: AD range retrieval is
	// done by the client).
	Members []string
	// MemberUIDs are posixGroup memberUid values (login names, not DNs).
	MemberUIDs []string
	// MemberOf lists the groups this group is in, where the server keeps it.
	MemberOf []string
	// SID is AD's objectSid as S-1-5-21-...-RID; empty elsewhere.
	SID string
}

// CheckResult is what a connection check found.
type CheckResult struct {
	URL    string `json:"url"`
	Users  int    `json:"users"`
	Groups int    `json:"groups"`
}

// Client is what the syncer and the login path need from a directory.
// Reads stream entries to fn so 100k users never sit in memory as raw LDAP
// entries; if fn returns an error the read stops with it. Any directory
// error during a read is returned wrapped in ErrUnavailable or
// ErrIncompleteRead: a read either completes or fails, never half-succeeds.
type Client interface {
	// ReadUsers streams every user under users_dn matching
	// user_object_filter; those outside user_filter come with OutOfScope.
	ReadUsers(ctx context.Context, fn func(User) error) error
	// ReadGroups streams every group under groups_dn.
	ReadGroups(ctx context.Context, fn func(Group) error) error
	// FindUser looks one user up by login name with the service account
	// (the mail under legacy naming, naming: email); ErrUserNotFound if
	// none. Also used to resync one user at login. A user outside
	// user_filter is found, with OutOfScope set.
	FindUser(ctx context.Context, username string) (User, error)
	// Authenticate finds the user's DN and binds as it on a fresh connection.
	// An empty password fails with ErrBadCredentials before any I/O.
	Authenticate(ctx context.Context, username, password string) (User, error)
	// Check connects, binds as the service account and counts users/groups.
	Check(ctx context.Context) (CheckResult, error)
	// Close releases the pool; safe to call more than once.
	Close() error
}
