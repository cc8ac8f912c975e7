package cache

import (
	"context"
	"errors"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/config"
)

// Backend is the store contract every caller (syncer, auth, api, app)
// holds: badger (package cache/badgerstore, the embedded one-box default,
// through its Store.Backend) and PostgreSQL (package cache/pgstore,
// several replicas on one database, SPEC §12) implement it, and the
// conformance suite in cache/storetest runs every behaviour below against
// both.
//
// Transaction rules shared by every backend: Update's fn sees a
// consistent snapshot and its writes commit together or not at all; a
// commit that loses a race with another writer reruns fn (so fn must be
// safe to repeat); a username or a (directory, uuid) that another user
// holds is refused with ErrNameTaken / ErrUUIDTaken.
type Backend interface {
	// Update runs fn in one read-write transaction (see above).
	Update(ctx context.Context, fn func(tx Txn) error) error
	// NamesToken and TrustNames let a sync that read the store's names
	// skip PutUser's index lookups for its creates while nobody else wrote
	// a name meanwhile (cache/badgerstore/names.go). A backend without
	// the mechanism hands out tokens that are never trusted.
	NamesToken(ctx context.Context) (NamesToken, error)
	TrustNames() (end func(), ok bool)

	// UserByID is the session check's read: served from memory when hot,
	// without allocating; the returned Groups is shared with the cache
	// (read it, or clone it before changing elements).
	UserByID(ctx context.Context, id uint64) (account.User, error)
	UserByName(ctx context.Context, name string) (account.User, error)
	UserByUUID(ctx context.Context, dirID uint64, uuid string) (account.User, error)
	CreateUser(ctx context.Context, u account.User) (account.User, error)
	UpdateUser(ctx context.Context, id uint64, fn func(*account.User) error) (account.User, error)
	DeleteUser(ctx context.Context, id uint64) error
	ListUsers(ctx context.Context, f UserFilter) ([]account.User, int, error)
	// OpenUserList is ListUsers read as it is written out (SPEC §7: a
	// listing of 100k users streams); Close must be called.
	OpenUserList(ctx context.Context, f UserFilter) (UserCursor, error)
	UsersOfDirectory(ctx context.Context, dirID uint64) ([]account.User, error)
	ForEachUser(ctx context.Context, fn func(account.User) error) error
	CountUsers(ctx context.Context) (map[uint64]map[account.State]int, error)
	PruneConfigLocalUsers(ctx context.Context, names []string) ([]string, error)

	DirectoryIDForName(ctx context.Context, name string) (uint64, error)
	SaveDirectory(ctx context.Context, d config.Directory) (config.Directory, error)
	Directories(ctx context.Context) ([]config.Directory, error)
	DeleteDirectory(ctx context.Context, id uint64) error
	SetNamingOverride(ctx context.Context, dirID uint64, naming string) error
	NamingOverride(ctx context.Context, dirID uint64) (string, error)

	// LiveCookie and SetLiveCookie keep a directory's live-change cookie
	// (SPEC §13): nil when none; nil or empty removes it.
	LiveCookie(ctx context.Context, dirID uint64) ([]byte, error)
	SetLiveCookie(ctx context.Context, dirID uint64, cookie []byte) error

	CreateRun(ctx context.Context, r Run) (Run, error)
	FinishRun(ctx context.Context, r Run) error
	Run(ctx context.Context, runID uint64) (Run, error)
	Runs(ctx context.Context, dirID uint64, limit int) ([]Run, error)
	// RunChanges lists a run's audit entries in seq order: an empty,
	// never nil, list for a run without changes (answers say [], not null).
	RunChanges(ctx context.Context, runID uint64) ([]AuditEntry, error)

	PutSession(ctx context.Context, sess Session) error
	CreateSession(ctx context.Context, sess Session, maxPerUser int, check func(account.User) error) ([][32]byte, error)
	SessionByHash(ctx context.Context, h [32]byte) (Session, error)
	DeleteSession(ctx context.Context, h [32]byte) error
	DeleteUserSessions(ctx context.Context, userID uint64) (int, error)
	CountSessions(ctx context.Context) (int, error)

	Close() error
}

// UserCursor is one page of users from one snapshot (Backend.OpenUserList).
type UserCursor interface {
	// Len is the number of users of the page, Total of every match.
	Len() int
	Total() int
	// Each calls fn with the page's users in id order; the user is valid
	// only during the call.
	Each(ctx context.Context, fn func(*account.User) error) error
	// Close releases the snapshot. Safe to call twice.
	Close()
}

// Txn is the view of the store inside one Backend.Update.
type Txn interface {
	UserByID(id uint64) (account.User, error)
	UserByName(name string) (account.User, error)
	UserByUUID(dirID uint64, uuid string) (account.User, error)
	// PutUser creates (u.ID == 0: an id is assigned into u) or replaces a
	// user, keeping the name and uuid indexes.
	PutUser(u *account.User) error
	DeleteUser(id uint64) error
	DeleteUserSessions(userID uint64) (int, error)
	AddAudit(runID uint64, e AuditEntry) error
	SetNamingOverride(dirID uint64, naming string) error
	// TrustNames: see Backend.NamesToken.
	TrustNames(t NamesToken) (bool, error)
}

// ErrUnavailable: the store cannot be reached, or a shared store's change
// feed has been silent too long to trust what is cached (SPEC §12: fail
// closed, 503, rather than let in on a stale cache).
var ErrUnavailable = errors.New("store unavailable")

// Change is what a process sharing the store committed, for the caches
// kept in front of it (auth's session LRU).
type Change struct {
	// All: changes may have been missed (the feed was interrupted):
	// drop every cached entry.
	All bool
	// UserID: every session of this user ended (0: none).
	UserID uint64
	// Session: this session ended (the zero hash: none).
	Session [32]byte
}

// Watcher is a Backend shared with other processes (PostgreSQL). Watch
// registers fn, called from the store's one listener goroutine for each
// change any process commits (this one's included), and with All when
// the feed was interrupted. Register before serving requests.
type Watcher interface {
	Watch(fn func(Change))
}

// SyncBatcher is a Backend whose sync batches (one transaction each)
// should hold another number of changes than the syncer's default.
type SyncBatcher interface {
	SyncBatch() int
}

// Locker is a Backend shared with other processes: the syncs of one
// directory are single-flight across all of them (SPEC §12).
type Locker interface {
	// TryLockDirectory takes directory dirID's sync lock unless another
	// process holds it (ok false). The lock also ends with the process
	// that holds it (a replica killed mid-sync leaves no stuck lock).
	TryLockDirectory(ctx context.Context, dirID uint64) (l Lock, ok bool, err error)
	// TryLockStream is the same for following the directory's live
	// changes: one replica streams them, the others stand by.
	TryLockStream(ctx context.Context, dirID uint64) (l Lock, ok bool, err error)
}

// Lock is a cross-process lock this process holds.
type Lock struct {
	// Release gives it back.
	Release func()
	// Lost is closed when the lock may have ended without Release (its
	// holder's connection broke: the database restarted, the network cut
	// it), so another process may hold it now: the work done under it
	// must stop. Nil: never lost.
	Lost <-chan struct{}
}
