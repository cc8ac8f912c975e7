package badgerstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
)

// maxConflictRetries bounds Update's retries on badger.ErrConflict (two
// writers read-modify-wrote the same keys); past it the conflict is returned.
const maxConflictRetries = 10

// maxReruns bounds ErrRerun's reruns of one Update: a sync's batch drops
// at most one change per rerun.
const maxReruns = 100_000

// Tx is the write transaction handed to the function given to Update. It
// is not safe for concurrent use and must not escape fn.
type Tx struct {
	s *Store
	// txn is the badger write transaction, or in big mode a read-only
	// snapshot under big.
	txn *badger.Txn
	big *overlay
	now time.Time

	// assigned are user ids drawn from the sequence by earlier attempts of
	// this Update (shared across conflict retries): a caller that reuses its
	// *account.User across a retry comes back with the id already set.
	assigned map[uint64]bool

	// touched users and names, for cache invalidation after commit.
	ids   []uint64
	names []string

	// auditSeq is the last audit seq this transaction gave out per run.
	// The stored sequence (rs/<run>) is read on a run's first AddAudit and
	// written once, by finish, rather than read and rewritten per entry: a
	// first sync adds 100k entries.
	auditSeq map[uint64]uint64
	// audit holds each run's entries not yet written: they are stored in
	// chunks of consecutive entries, one key per chunk (see keys.go).
	audit map[uint64]*auditChunk
	// scratch is reused to encode audit entries.
	scratch []byte
	// last is the last user UserByID read or PutUser wrote (remember).
	last struct {
		u  account.User
		ok bool
	}
	// trusted: PutUser skips its index lookups for new users (names.go).
	// wroteNames: this transaction has written the names version.
	trusted, wroteNames bool
}

// auditChunk is a JSON array of consecutive audit entries being built.
type auditChunk struct {
	first uint64 // seq of the first entry: the chunk's key
	n     int
	buf   []byte
}

// Chunk bounds: one key per 256 entries instead of one per entry took a
// fifth of the keys (and of badger's per-key work) out of a first sync,
// and ~64 KiB values stay far below badger's transaction and value
// limits, also as journal entries of a big transaction.
const (
	auditChunkEntries = 256
	auditChunkBytes   = 64 << 10
)

func (tx *Tx) writeAuditChunk(runID uint64, c *auditChunk) error {
	c.buf = append(c.buf, ']')
	if err := tx.set(key(pAudit, runID, c.first), c.buf); err != nil {
		return fmt.Errorf("add audit to run %d: %w", runID, err)
	}
	return nil
}

// finish writes what the transaction kept in memory (the audit entries of
// unfinished chunks and the audit sequences). Update calls it after fn
// succeeded, before committing, so they commit with the rest or not at all.
func (tx *Tx) finish() error {
	for runID, c := range tx.audit {
		if err := tx.writeAuditChunk(runID, c); err != nil {
			return err
		}
	}
	tx.audit = nil
	for runID, seq := range tx.auditSeq {
		if err := tx.set(key(pAuditSeq, runID), idBytes(seq)); err != nil {
			return fmt.Errorf("audit sequence of run %d: %w", runID, err)
		}
	}
	return nil
}

// Update runs fn in one transaction and commits it, all or nothing.
//
// On badger.ErrConflict (another writer changed what fn read), and when fn
// returns ErrRerun, fn runs again in a fresh transaction, so fn must be safe
// to repeat and must read what it needs through tx. When fn writes more
// than one badger transaction holds (ErrTxnTooBig: a migration renaming a
// whole big directory), fn runs again in big mode: writes are buffered and
// committed through a journal that Open replays after a crash, with every
// other writer held off meanwhile; fn must then not call write methods of
// the Store itself (it would wait for itself).
//
// After commit (or a failed commit) the cache entries of every touched user
// are dropped, so no reader sees the old state of a user once Update has
// returned.
func (s *Store) Update(ctx context.Context, fn func(tx *Tx) error) error {
	assigned := map[uint64]bool{}
	conflicts, reruns := 0, 0
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("store update: %w", err)
		}
		tx := &Tx{s: s, txn: s.db.NewTransaction(true), now: time.Now().UTC(), assigned: assigned}
		err := fn(tx)
		if err == nil {
			err = tx.finish()
		}
		if err == nil {
			// Shared: only a big commit (exclusive) waits on it.
			s.writeMu.RLock()
			if err = s.brokenErr(); err == nil {
				err = tx.txn.Commit()
			}
			s.writeMu.RUnlock()
		}
		tx.txn.Discard()
		s.invalidate(tx.ids, tx.names)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, cache.ErrRerun) && reruns < maxReruns:
			reruns++
			continue
		case errors.Is(err, badger.ErrTxnTooBig):
			return s.updateBig(ctx, fn, assigned)
		case errors.Is(err, badger.ErrConflict) && conflicts < maxConflictRetries:
			conflicts++
			continue
		case errors.Is(err, badger.ErrConflict):
			return fmt.Errorf("store update: %w", err)
		default:
			return err
		}
	}
}

// lookup calls fn with the value of k as this transaction sees it
// (its own writes included). ErrNotFound.
func (tx *Tx) lookup(k []byte, fn func(v []byte) error) error {
	if tx.big != nil {
		if e, ok := tx.big.m[string(k)]; ok {
			if e.deleted {
				return cache.ErrNotFound
			}
			return fn(e.value)
		}
	}
	return txnLookup(tx.txn)(k, fn)
}

func (tx *Tx) get(k []byte) ([]byte, error) {
	var out []byte
	err := tx.lookup(k, func(v []byte) error {
		out = append([]byte{}, v...)
		return nil
	})
	return out, err
}

func (tx *Tx) setEntry(e *badger.Entry) error {
	if tx.big != nil {
		tx.big.put(e.Key, bigEntry{value: e.Value, expiresAt: e.ExpiresAt})
		return nil
	}
	if err := tx.txn.SetEntry(e); err != nil {
		return fmt.Errorf("write %q: %w", e.Key[:min(len(e.Key), 3)], err)
	}
	return nil
}

func (tx *Tx) set(k, v []byte) error { return tx.setEntry(badger.NewEntry(k, v)) }

func (tx *Tx) del(k []byte) error {
	if tx.big != nil {
		tx.big.put(k, bigEntry{deleted: true})
		return nil
	}
	if err := tx.txn.Delete(k); err != nil {
		return fmt.Errorf("delete %q: %w", k[:min(len(k), 3)], err)
	}
	return nil
}

// keys returns the keys under prefix as this transaction sees them, sorted.
func (tx *Tx) keys(prefix []byte) [][]byte {
	var out [][]byte
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefix
	opts.PrefetchValues = false
	it := tx.txn.NewIterator(opts)
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().KeyCopy(nil)
		if tx.big != nil {
			if _, ok := tx.big.m[string(k)]; ok {
				continue // the overlay decides below
			}
		}
		out = append(out, k)
	}
	it.Close()
	if tx.big != nil {
		for k, e := range tx.big.m {
			if !e.deleted && strings.HasPrefix(k, string(prefix)) {
				out = append(out, []byte(k))
			}
		}
		slices.SortFunc(out, bytes.Compare)
	}
	return out
}

// UserByID reads a user inside the transaction (sees its own writes).
func (tx *Tx) UserByID(id uint64) (account.User, error) {
	if tx.last.ok && tx.last.u.ID == id {
		u := tx.last.u
		u.Groups = cloneGroups(u.Groups)
		return u, nil
	}
	u, err := readUserByID(tx.lookup, id)
	if err == nil {
		tx.remember(u)
	}
	return u, err
}

// remember keeps u as the last user read or written, so that the read of a
// user followed by PutUser on it (every update a sync applies) decodes the
// record once: a third of the CPU of applying 100k updates went to the
// second read.
func (tx *Tx) remember(u account.User) {
	u.Groups = cloneGroups(u.Groups)
	tx.last.u, tx.last.ok = u, true
}

// cloneGroups copies g as decodeUser makes it: nil when empty.
func cloneGroups(g []string) []string {
	if len(g) == 0 {
		return nil
	}
	return slices.Clone(g)
}

// UserByName reads a user by (normalised) name inside the transaction.
func (tx *Tx) UserByName(name string) (account.User, error) {
	name = account.NormalizeName(name)
	return readUserByIndex(tx.lookup, userNameKey(name), fmt.Sprintf("user %q", name))
}

// UserByUUID reads a user by (directory, ldap_uuid) inside the transaction.
func (tx *Tx) UserByUUID(dirID uint64, uuid string) (account.User, error) {
	return readUserByIndex(tx.lookup, userUUIDKey(dirID, uuid), fmt.Sprintf("user uuid %d/%s", dirID, uuid))
}

// PutUser creates (ID 0) or replaces a user, keeping the name, (directory,
// uuid) and listing indexes in step; cache.PrepareUser says what it sets
// in u first (id, normalised name, timestamps). ErrNameTaken if another user holds the name, ErrUUIDTaken if another user
// of the directory holds the ldap_uuid, ErrNotFound for an unknown non-zero
// id (ids are only ever assigned here, never chosen by callers).
func (tx *Tx) PutUser(u *account.User) error {
	old, err := cache.PrepareUser(tx, u, tx.now, func() (uint64, error) { return nextID(tx.s.userSeq) }, tx.assigned)
	if err != nil {
		return err
	}

	// A new user in a trusted transaction: the caller's plan checked the
	// name and uuid against the store as it still is (names.go).
	checked := tx.trusted && old == nil
	if old == nil || old.Username != u.Username {
		if !checked {
			v, err := tx.get(userNameKey(u.Username))
			switch {
			case err == nil && bytesID(v) != u.ID:
				return fmt.Errorf("put user %q: %w", u.Username, cache.ErrNameTaken)
			case err != nil && !errors.Is(err, cache.ErrNotFound):
				return fmt.Errorf("put user %q: name index: %w", u.Username, err)
			}
		}
		if err := tx.namesChanged(); err != nil {
			return fmt.Errorf("put user %q: %w", u.Username, err)
		}
		if err := tx.set(userNameKey(u.Username), idBytes(u.ID)); err != nil {
			return fmt.Errorf("put user %q: %w", u.Username, err)
		}
		// The old name is freed only if it still points here: in a chain of
		// renames in one transaction another user may have taken it already.
		if old != nil {
			if v, err := tx.get(userNameKey(old.Username)); err == nil && bytesID(v) == u.ID {
				if err := tx.del(userNameKey(old.Username)); err != nil {
					return fmt.Errorf("put user %q: %w", u.Username, err)
				}
			}
		}
	}
	hasUUID := func(x *account.User) bool { return x.LDAPUUID != "" }
	if hasUUID(u) && (old == nil || old.DirectoryID != u.DirectoryID || old.LDAPUUID != u.LDAPUUID) {
		k := userUUIDKey(u.DirectoryID, u.LDAPUUID)
		if !checked {
			v, err := tx.get(k)
			switch {
			case err == nil && bytesID(v) != u.ID:
				return fmt.Errorf("put user %q: uuid %s of directory %d: %w", u.Username, u.LDAPUUID, u.DirectoryID, cache.ErrUUIDTaken)
			case err != nil && !errors.Is(err, cache.ErrNotFound):
				return fmt.Errorf("put user %q: uuid index: %w", u.Username, err)
			}
		}
		if err := tx.namesChanged(); err != nil {
			return fmt.Errorf("put user %q: %w", u.Username, err)
		}
		if err := tx.set(k, idBytes(u.ID)); err != nil {
			return fmt.Errorf("put user %q: %w", u.Username, err)
		}
	}
	if old != nil && hasUUID(old) && (old.DirectoryID != u.DirectoryID || old.LDAPUUID != u.LDAPUUID) {
		k := userUUIDKey(old.DirectoryID, old.LDAPUUID)
		if v, err := tx.get(k); err == nil && bytesID(v) == u.ID {
			if err := tx.del(k); err != nil {
				return fmt.Errorf("put user %q: %w", u.Username, err)
			}
		}
	}
	lv := listValue(u)
	if old == nil || old.DirectoryID != u.DirectoryID || !bytes.Equal(listValue(old), lv) {
		if old != nil && old.DirectoryID != u.DirectoryID {
			if err := tx.del(userListKey(old.DirectoryID, u.ID)); err != nil {
				return fmt.Errorf("put user %q: %w", u.Username, err)
			}
		}
		if err := tx.set(userListKey(u.DirectoryID, u.ID), lv); err != nil {
			return fmt.Errorf("put user %q: %w", u.Username, err)
		}
	}
	if old != nil && old.PasswordHash != u.PasswordHash {
		// A password change (or the hash dropped when a sync converts a
		// local user) ends the user's sessions in the same commit (SPEC
		// §5): whoever changes it, none outlives the password it was
		// made with, even across a restart.
		if _, err := tx.DeleteUserSessions(u.ID); err != nil {
			return fmt.Errorf("put user %q: %w", u.Username, err)
		}
	}
	b, err := encodeUser(u)
	if err != nil {
		return err
	}
	if err := tx.set(userKey(u.ID), b); err != nil {
		tx.last.ok = false
		return fmt.Errorf("put user %q: %w", u.Username, err)
	}
	tx.remember(*u)
	tx.ids = append(tx.ids, u.ID)
	tx.names = append(tx.names, u.Username)
	if old != nil && old.Username != u.Username {
		tx.names = append(tx.names, old.Username)
	}
	return nil
}

// DeleteUser removes a user, its index entries and all its sessions.
// ErrNotFound if there is no such user.
func (tx *Tx) DeleteUser(id uint64) error {
	u, err := tx.UserByID(id)
	if err != nil {
		return fmt.Errorf("delete user: %w", err)
	}
	keys := [][]byte{userKey(id), userNameKey(u.Username), userListKey(u.DirectoryID, id)}
	if u.LDAPUUID != "" {
		k := userUUIDKey(u.DirectoryID, u.LDAPUUID)
		// Only if it still points here: never drop another user's entry.
		if v, err := tx.get(k); err == nil && bytesID(v) == id {
			keys = append(keys, k)
		}
	}
	tx.last.ok = false
	for _, k := range keys {
		if err := tx.del(k); err != nil {
			return fmt.Errorf("delete user %d: %w", id, err)
		}
	}
	if _, err := tx.DeleteUserSessions(id); err != nil {
		return fmt.Errorf("delete user %d: %w", id, err)
	}
	tx.ids = append(tx.ids, id)
	tx.names = append(tx.names, u.Username)
	return nil
}

// AddAudit appends e to the audit list of run runID, assigning e.Seq (1,
// 2, ...; in order of the calls, across transactions). At is set if zero.
func (tx *Tx) AddAudit(runID uint64, e cache.AuditEntry) error {
	seq, ok := tx.auditSeq[runID]
	if !ok {
		v, err := tx.get(key(pAuditSeq, runID))
		switch {
		case err == nil:
			seq = bytesID(v)
		case !errors.Is(err, cache.ErrNotFound):
			return fmt.Errorf("add audit to run %d: %w", runID, err)
		}
		if tx.auditSeq == nil {
			tx.auditSeq = map[uint64]uint64{}
		}
	}
	seq++
	tx.auditSeq[runID] = seq
	e.Seq = seq
	if e.At.IsZero() {
		e.At = tx.now
	}
	// Encoded into a buffer the transaction reuses, and chunks start at the
	// size the last one reached: a first sync of 100k users allocated
	// ~120 MB growing these, for ~15 MB of entries.
	b, err := cache.AppendAudit(tx.scratch[:0], &e)
	if err != nil {
		return fmt.Errorf("add audit to run %d: %w", runID, err)
	}
	tx.scratch = b
	c := tx.audit[runID]
	if c == nil {
		if tx.audit == nil {
			tx.audit = map[uint64]*auditChunk{}
		}
		c = &auditChunk{first: seq, buf: make([]byte, 0, max(4096, int(tx.s.auditChunkSize.Load())))}
		c.buf = append(c.buf, '[')
		tx.audit[runID] = c
	} else {
		c.buf = append(c.buf, ',')
	}
	c.buf = append(c.buf, b...)
	if c.n++; c.n >= auditChunkEntries || len(c.buf) >= auditChunkBytes {
		delete(tx.audit, runID)
		// Room for the closing bracket and a slightly longer next chunk.
		tx.s.auditChunkSize.Store(int64(len(c.buf) + len(c.buf)/8))
		return tx.writeAuditChunk(runID, c)
	}
	return nil
}

// SetNamingOverride records, in this transaction, that directory dirID now
// uses naming (SPEC §3 migrate of a config-file directory), so the renames
// and the switch commit together.
func (tx *Tx) SetNamingOverride(dirID uint64, naming string) error {
	k := key(pDirNaming, dirID)
	if naming == "" {
		return tx.del(k)
	}
	return tx.set(k, []byte(naming))
}
