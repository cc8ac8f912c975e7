// Package directory is ldapgate's LDAP client: the one small interface the
// syncer and the login path use, and its go-ldap implementation (dialing with
// failover and TLS, a bounded service-account pool, paged streaming reads,
// user binds on their own connections), plus the naming rules of SPEC §3.
package directory

import (
	"context"
	"errors"
	"time"
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
	// ErrAccountLocked: temporarily locked (AD 49/data 775, ppolicy
	// accountLocked on a lock that is not the permanent 000001010000Z).
	ErrAccountLocked = errors.New("account locked in directory")
	// ErrAccountExpired: the password was right but the account has expired
	// (AD 49/data 701, accountExpires or krbPrincipalExpiration in the past).
	ErrAccountExpired = errors.New("account expired in directory")
	// ErrPasswordChangeRequired: the password was right but has expired or
	// must be changed before use (AD 49/data 532 or 773, ppolicy
	// passwordExpired or changeAfterReset, 389-ds's password-expired
	// control, pwdReset, krbPasswordExpiration in the past) (SPEC §13).
	ErrPasswordChangeRequired = errors.New("password expired or must be changed")
	// ErrPasswordRefused: the directory refused the new password (policy,
	// history, age); a *PasswordRefusedError says why in words.
	ErrPasswordRefused = errors.New("directory refused the new password")
	// ErrTLSRequired: Active Directory changes passwords only over LDAPS or
	// StartTLS, and this directory is configured for neither.
	ErrTLSRequired = errors.New("password change needs an LDAPS or StartTLS connection")
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
	// AccountExpiresAt is when the account expires (AD accountExpires,
	// FreeIPA krbPrincipalExpiration); zero when never. The syncer compares
	// it with its clock (SPEC §13: blocked_in_ldap, ldap_status expired).
	AccountExpiresAt time.Time
	// PasswordMustChange: the password was reset by an administrator and
	// must be changed at the next login (ppolicy pwdReset TRUE, AD
	// pwdLastSet 0). Read by FindUser only: not a block, a login answer.
	PasswordMustChange bool
	// PasswordExpiresAt is when the password expires (FreeIPA
	// krbPasswordExpiration, AD msDS-UserPasswordExpiryTimeComputed);
	// zero when never or unknown. Read by FindUser only.
	PasswordExpiresAt time.Time
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
	// ChangePassword changes the user's password in the directory as the
	// user (RFC 3062 Password Modify; unicodePwd delete/add on AD, over TLS
	// only) and returns the entry as FindUser would. A wrong old password
	// is ErrBadCredentials, a refused new one a *PasswordRefusedError.
	ChangePassword(ctx context.Context, username, oldPassword, newPassword string) (User, error)
	// Check connects, binds as the service account and counts users/groups.
	Check(ctx context.Context) (CheckResult, error)
	// Close releases the pool; safe to call more than once.
	Close() error
}
