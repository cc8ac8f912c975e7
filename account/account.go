// Package account holds the user model shared by the store, the syncer, the
// login path and the admin API. It has no I/O so the planner can stay pure.
package account

import (
	"slices"
	"strings"
	"time"
)

// State is a user's store state (SPEC §2).
type State string

const (
	StateActive        State = "active"
	StateBlocked       State = "blocked"
	StateBlockedInLDAP State = "blocked_in_ldap"
)

// BlockReason says why a user is not active (SPEC §2). Empty for active users
// and for blocked_in_ldap (the directory said so; no further reason).
type BlockReason string

const (
	ReasonNone             BlockReason = ""
	ReasonDeletedInLDAP    BlockReason = "deleted_in_ldap"
	ReasonOutOfScope       BlockReason = "out_of_scope"
	ReasonDirectoryRemoved BlockReason = "directory_removed"
	// ReasonAdmin is the one block sync never undoes (rule 10).
	ReasonAdmin BlockReason = "admin"
)

// LDAPStatus says why the directory keeps a user out (SPEC §13): set only
// while the user is blocked_in_ldap, empty otherwise.
type LDAPStatus string

const (
	LDAPStatusNone     LDAPStatus = ""
	LDAPStatusDisabled LDAPStatus = "disabled"
	LDAPStatusExpired  LDAPStatus = "expired"
)

// Source says where a user's identity comes from.
type Source string

const (
	SourceLocal Source = "local"
	SourceLDAP  Source = "ldap"
)

// User is one platform user as the store keeps it.
type User struct {
	ID          uint64 `json:"id"`
	Username    string `json:"username"`
	Email       string `json:"email"`
	DisplayName string `json:"display_name"`
	Role        string `json:"role"`
	// Groups are the names of the mapped directory groups the user is in;
	// they travel upstream in X-Forwarded-Groups.
	Groups      []string    `json:"groups"`
	State       State       `json:"state"`
	BlockReason BlockReason `json:"block_reason"`
	LDAPStatus  LDAPStatus  `json:"ldap_status"`
	Source      Source      `json:"source"`
	DirectoryID uint64      `json:"directory_id,omitempty"`
	LDAPDN      string      `json:"ldap_dn,omitempty"`
	LDAPUUID    string      `json:"ldap_uuid,omitempty"`
	// PasswordHash is the argon2id/bcrypt hash of a local user; always empty
	// for LDAP users (their password lives in the directory only). Never
	// serialised to API answers: the store encodes users with its own type.
	PasswordHash string    `json:"-"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
	LastLoginAt  time.Time `json:"last_login_at,omitzero"`
	LastSyncedAt time.Time `json:"last_synced_at,omitzero"`
}

// Active reports whether the user may log in and use sessions.
func (u *User) Active() bool { return u.State == StateActive }

// NormalizeName is the one place login names are canonicalised: stored and
// compared lower-cased (SPEC §3).
func NormalizeName(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// HigherRole returns whichever of a and b comes first in roles (highest
// first). An unknown role loses to a known one.
func HigherRole(roles []string, a, b string) string {
	ia, ib := slices.Index(roles, a), slices.Index(roles, b)
	switch {
	case ia < 0:
		return b
	case ib < 0:
		return a
	case ib < ia:
		return b
	default:
		return a
	}
}
