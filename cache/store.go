// Package cache is the store contract: what ldapgate keeps (users,
// API-created directories, sync runs with their audit lists, sessions),
// the Backend and Txn interfaces every store implements, the sentinel
// errors callers branch on and the helpers the stores share. The stores
// are cache/badgerstore (badger v4 under data_dir, the embedded default)
// and cache/pgstore (PostgreSQL, several replicas on one database); the
// conformance suite in cache/storetest runs on both.
package cache

import (
	"errors"
	"time"
)

// Sentinel errors.
var (
	// ErrNotFound: no such record.
	ErrNotFound = errors.New("not found")
	// ErrNameTaken: another user already has that username.
	ErrNameTaken = errors.New("username already taken")
	// ErrLocked: the data directory is held by another process.
	ErrLocked = errors.New("store is in use by another process")
)

// ErrUUIDTaken: another user of the same directory already has that
// ldap_uuid. The syncer matches by uuid first (SPEC §2), so seeing this
// means two store users claim one directory entry.
var ErrUUIDTaken = errors.New("ldap uuid already taken")

// ErrRerun, returned (wrapped) by an Update's fn, discards its transaction
// and runs fn again in a new one: fn has changed its own input (a sync
// drops a change whose name another writer took) and will do less next
// time. Update and its redo paths all honour it (badgerstore's up to
// maxReruns times).
var ErrRerun = errors.New("store: run the update again")

// ErrNewerLayout: the store was written by a newer ldapgate than this one.
var ErrNewerLayout = errors.New("this store was written by a newer ldapgate")

// NamesToken is what a caller knew of the store's names when it read them
// (Backend.NamesToken). Only the backend that handed it out reads or sets
// its fields (cache/badgerstore/names.go); callers pass it on unchanged.
type NamesToken struct {
	// Version is the raw value of badgerstore's names-version key (any
	// bytes compare: a value that code did not write only makes writers
	// untrusted until it changes).
	Version string
	// Gen is badgerstore's trust generation when the token was taken.
	Gen uint64
}

// Run results.
const (
	RunRunning = "running"
	RunSuccess = "success"
	RunFailed  = "failed"
	RunRefused = "refused"
	RunDryRun  = "dry_run"
)

// Run is one sync of one directory (SPEC §4 audit).
type Run struct {
	ID          uint64    `json:"id"`
	DirectoryID uint64    `json:"directory_id"`
	Directory   string    `json:"directory"`
	Trigger     string    `json:"trigger"` // schedule, api, start
	DryRun      bool      `json:"dry_run"`
	Forced      bool      `json:"forced"`
	Result      string    `json:"result"`
	Error       string    `json:"error,omitempty"`
	StartedAt   time.Time `json:"started_at"`
	FinishedAt  time.Time `json:"finished_at,omitzero"`
	// Counts is the number of planned (dry run) or applied changes by action.
	Counts map[string]int `json:"counts"`
	// DirectoryUsers is how many users the read returned.
	DirectoryUsers int `json:"directory_users"`
}

// AuditEntry is one applied change of a run.
type AuditEntry struct {
	Seq      uint64    `json:"seq"`
	At       time.Time `json:"at"`
	Action   string    `json:"action"`
	UserID   uint64    `json:"user_id"`
	Username string    `json:"username"`
	Reason   string    `json:"reason,omitempty"`
	// Fields are the changed fields: name → [old, new].
	Fields map[string][2]string `json:"fields,omitempty"`
	// Planned marks a dry run's change: what a real sync would do, not
	// applied. Absent (false) on every applied change.
	Planned bool `json:"planned,omitempty"`
}

// Session is a stored session. Only the SHA-256 of the token is kept.
type Session struct {
	TokenHash [32]byte  `json:"-"`
	UserID    uint64    `json:"user_id"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	LastSeen  time.Time `json:"last_seen"`
}

// UserFilter selects users for listings. Zero values match everything.
type UserFilter struct {
	State       string
	Role        string
	Source      string
	DirectoryID uint64 // 0: any
	Limit       int    // 0: no limit
	Offset      int
	// Query, when set, keeps users whose username, email or display name
	// contains it, ignoring case (the console's search box).
	Query string
}
