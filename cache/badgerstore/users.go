package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
)

// lookupFn calls fn with the value stored under k, or returns ErrNotFound.
// It lets the user readers serve both badger read transactions and a Tx
// (whose big mode reads through an overlay).
type lookupFn func(k []byte, fn func(v []byte) error) error

func txnLookup(txn *badger.Txn) lookupFn {
	return func(k []byte, fn func(v []byte) error) error {
		it, err := txn.Get(k)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return cache.ErrNotFound
		}
		if err != nil {
			return err
		}
		return it.Value(fn)
	}
}

func readUserByID(look lookupFn, id uint64) (account.User, error) {
	var u account.User
	err := look(userKey(id), func(v []byte) error {
		var err error
		u, err = decodeUser(v)
		return err
	})
	if err != nil {
		return account.User{}, fmt.Errorf("user %d: %w", id, err)
	}
	return u, nil
}

func readUserByIndex(look lookupFn, k []byte, what string) (account.User, error) {
	var id uint64
	if err := look(k, func(v []byte) error { id = bytesID(v); return nil }); err != nil {
		return account.User{}, fmt.Errorf("%s: %w", what, err)
	}
	return readUserByID(look, id)
}

func txUserByID(txn *badger.Txn, id uint64) (account.User, error) {
	return readUserByID(txnLookup(txn), id)
}

func txUserByIndex(txn *badger.Txn, k []byte, what string) (account.User, error) {
	return readUserByIndex(txnLookup(txn), k, what)
}

func txUserByName(txn *badger.Txn, name string) (account.User, error) {
	return txUserByIndex(txn, userNameKey(name), fmt.Sprintf("user %q", name))
}

// fillUser puts a user read from badger into the caches, unless a write
// invalidated anything since gen0 was taken (before the read). Without that
// check a reader that read the old record just before a block committed
// could put it back after the invalidation, and the blocked user would be
// served as active from cache indefinitely.
func (s *Store) fillUser(gen0 uint64, u account.User) {
	p := &u
	s.fillMu.Lock()
	defer s.fillMu.Unlock()
	if s.gen.Load() != gen0 {
		return
	}
	s.byID.Add(u.ID, p)
	s.byName.Add(u.Username, u.ID)
}

func (s *Store) invalidate(ids []uint64, names []string) {
	if len(ids) == 0 && len(names) == 0 {
		return
	}
	s.fillMu.Lock()
	defer s.fillMu.Unlock()
	s.gen.Add(1)
	for _, id := range ids {
		s.byID.Remove(id)
	}
	for _, n := range names {
		s.byName.Remove(n)
	}
}

func (s *Store) countHit(hit bool) {
	c := s.misses
	if hit {
		c = s.hits
	}
	if c != nil {
		c.Inc()
	}
}

// UserByID returns a copy of user id (ErrNotFound). Served from the LRU
// when hot, without allocating. The Groups slice of the copy is shared with
// the cache: read it, or slices.Clone it before changing elements
// (appending is safe: it is clipped).
func (s *Store) UserByID(ctx context.Context, id uint64) (account.User, error) {
	if p, ok := s.byID.Get(id); ok {
		s.countHit(true)
		return *p, nil
	}
	s.countHit(false)
	return s.loadUser(ctx, func(txn *badger.Txn) (account.User, error) { return txUserByID(txn, id) })
}

// UserByName returns the user with that login name (normalised with
// account.NormalizeName). ErrNotFound.
func (s *Store) UserByName(ctx context.Context, name string) (account.User, error) {
	name = account.NormalizeName(name)
	if id, ok := s.byName.Get(name); ok {
		// Both entries are dropped together on writes; the name check guards
		// against a pair filled from different reads.
		if p, ok := s.byID.Get(id); ok && p.Username == name {
			s.countHit(true)
			return *p, nil
		}
	}
	s.countHit(false)
	return s.loadUser(ctx, func(txn *badger.Txn) (account.User, error) { return txUserByName(txn, name) })
}

// loadUser is the cache-miss path of the user reads: read in a view
// transaction, then fill the LRU unless a write happened meanwhile (gen0
// is taken before the read, so a stale record is never cached).
func (s *Store) loadUser(ctx context.Context, read func(*badger.Txn) (account.User, error)) (account.User, error) {
	if err := ctx.Err(); err != nil {
		return account.User{}, err
	}
	gen0 := s.gen.Load()
	var u account.User
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		u, err = read(txn)
		return err
	})
	if err != nil {
		return account.User{}, err
	}
	s.fillUser(gen0, u)
	return u, nil
}

// UserByUUID returns the user of directory dirID with that ldap_uuid.
func (s *Store) UserByUUID(ctx context.Context, dirID uint64, uuid string) (account.User, error) {
	if err := ctx.Err(); err != nil {
		return account.User{}, err
	}
	var u account.User
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		u, err = txUserByIndex(txn, userUUIDKey(dirID, uuid), fmt.Sprintf("user uuid %d/%s", dirID, uuid))
		return err
	})
	return u, err
}

// CreateUser: see cache.CreateUser.
func (s *Store) CreateUser(ctx context.Context, u account.User) (account.User, error) {
	return cache.CreateUser(ctx, badgerBackend{s}, u)
}

// UpdateUser: see cache.UpdateUser.
func (s *Store) UpdateUser(ctx context.Context, id uint64, fn func(*account.User) error) (account.User, error) {
	return cache.UpdateUser(ctx, badgerBackend{s}, id, fn)
}

// DeleteUser deletes user id and all its sessions. ErrNotFound.
func (s *Store) DeleteUser(ctx context.Context, id uint64) error {
	return s.Update(ctx, func(tx *Tx) error { return tx.DeleteUser(id) })
}

// ListUsers returns the page of users matching f, ordered by id, and the
// number of all matching users. Filtering reads only the small listing
// index; only the users of the page are decoded.
func (s *Store) ListUsers(ctx context.Context, f cache.UserFilter) ([]account.User, int, error) {
	l, err := s.OpenUserList(ctx, f)
	if err != nil {
		return nil, 0, err
	}
	defer l.Close()
	page := make([]account.User, 0, l.Len())
	err = l.Each(ctx, func(u *account.User) error {
		page = append(page, *u)
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return page, l.Total(), nil
}

// matchesText: q (lower-case) is in the username, email or display name.
func matchesText(u *account.User, q string) bool {
	return strings.Contains(u.Username, q) || // stored lower-case
		strings.Contains(strings.ToLower(u.Email), q) ||
		strings.Contains(strings.ToLower(u.DisplayName), q)
}

// UserList is one listing of users, read from one snapshot: the ids of the
// page are known when it opens (from the listing index, without decoding a
// user), the users are decoded one at a time by Each. A caller can then
// write a listing of 100,000 users as it reads them (SPEC §7: the process
// grows by a few MiB, not by the whole list). Close releases the snapshot.
type UserList struct {
	txn   *badger.Txn
	ids   []uint64
	total int
}

// Total is the number of every user matching the filter, for paging.
func (l *UserList) Total() int { return l.total }

// OpenUserList reads the listing index for f and keeps the snapshot open
// for Each.
func (s *Store) OpenUserList(ctx context.Context, f cache.UserFilter) (*UserList, error) {
	txn := s.db.NewTransaction(false)
	prefix := []byte(pUserList)
	if f.DirectoryID != 0 {
		prefix = key(pUserList, f.DirectoryID)
	}
	var ids []uint64
	err := iterate(ctx, txn, prefix, func(k, v []byte) error {
		if parseListValue(v).match(f) {
			ids = append(ids, suffixID(k))
		}
		return nil
	})
	if err != nil {
		txn.Discard()
		return nil, fmt.Errorf("list users: %w", err)
	}
	if f.DirectoryID == 0 {
		// ul/ is ordered by directory first.
		slices.Sort(ids)
	}
	if f.Query != "" {
		// The text lives in the records, not the index: one sequential
		// walk decodes the candidates and keeps only the matching ids.
		q := strings.ToLower(f.Query)
		var kept []uint64
		err := usersByIDs(ctx, txn, ids, func(u account.User) error {
			if matchesText(&u, q) {
				kept = append(kept, u.ID)
			}
			return nil
		})
		if err != nil {
			txn.Discard()
			return nil, fmt.Errorf("list users: %w", err)
		}
		ids = kept
	}
	lo := min(max(f.Offset, 0), len(ids))
	hi := len(ids)
	if f.Limit > 0 {
		hi = min(lo+f.Limit, hi)
	}
	return &UserList{txn: txn, ids: ids[lo:hi], total: len(ids)}, nil
}

// Len is the number of users of the page.
func (l *UserList) Len() int { return len(l.ids) }

// Each calls fn with the page's users in id order. The user is valid only
// during the call.
func (l *UserList) Each(ctx context.Context, fn func(*account.User) error) error {
	if len(l.ids) == 0 {
		return nil
	}
	err := usersByIDs(ctx, l.txn, l.ids, func(u account.User) error { return fn(&u) })
	if err != nil {
		return fmt.Errorf("list users: %w", err)
	}
	return nil
}

// Close releases the snapshot. Safe to call twice.
func (l *UserList) Close() { l.txn.Discard() }

// UsersOfDirectory returns every user of directory dirID (0: the local
// users), ordered by id.
func (s *Store) UsersOfDirectory(ctx context.Context, dirID uint64) ([]account.User, error) {
	var out []account.User
	err := s.db.View(func(txn *badger.Txn) error {
		var ids []uint64
		err := iterate(ctx, txn, key(pUserList, dirID), func(k, _ []byte) error {
			ids = append(ids, suffixID(k))
			return nil
		})
		if err != nil {
			return err
		}
		out = make([]account.User, 0, len(ids))
		return usersByIDs(ctx, txn, ids, func(u account.User) error {
			out = append(out, u)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("users of directory %d: %w", dirID, err)
	}
	return out, nil
}

// ForEachUser calls fn with every user, ordered by id, from one consistent
// snapshot; fn's error stops the walk and is returned.
func (s *Store) ForEachUser(ctx context.Context, fn func(account.User) error) error {
	return s.db.View(func(txn *badger.Txn) error {
		return iterate(ctx, txn, []byte(pUser), func(_, v []byte) error {
			u, err := decodeUser(v)
			if err != nil {
				return err
			}
			return fn(u)
		})
	})
}

// CountUsers counts users by directory id (0: local users) and state, for
// the ldapgate_users gauge.
func (s *Store) CountUsers(ctx context.Context) (map[uint64]map[account.State]int, error) {
	out := map[uint64]map[account.State]int{}
	err := s.db.View(func(txn *badger.Txn) error {
		return iterate(ctx, txn, []byte(pUserList), func(k, v []byte) error {
			dir := bytesID(k[len(pUserList) : len(pUserList)+8])
			m := out[dir]
			if m == nil {
				m = map[account.State]int{}
				out[dir] = m
			}
			m[account.State(parseListValue(v).state)]++
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("count users: %w", err)
	}
	return out, nil
}

// pointLookupMax is the number of ids up to which usersByIDs reads users
// one Get at a time. Past it a sequential walk of the user records is
// cheaper: 100k Gets took 0.55 s and allocated heavily (bloom checks and a
// seek per level each), the walk of all 100k records 0.05 s.
const pointLookupMax = 2048

// usersByIDs calls fn with the users of ids (ascending, as the listing
// index yields them) in that order. An id without a record means the
// indexes are out of step with the records: an error, not a skip.
func usersByIDs(ctx context.Context, txn *badger.Txn, ids []uint64, fn func(account.User) error) error {
	if len(ids) <= pointLookupMax {
		for _, id := range ids {
			u, err := txUserByID(txn, id)
			if err != nil {
				return fmt.Errorf("listing index: %w", err)
			}
			if err := fn(u); err != nil {
				return err
			}
		}
		return nil
	}
	opts := badger.DefaultIteratorOptions
	opts.Prefix = []byte(pUser)
	opts.PrefetchValues = false
	it := txn.NewIterator(opts)
	defer it.Close()
	j := 0
	for it.Seek(userKey(ids[0])); it.Valid() && j < len(ids); it.Next() {
		item := it.Item()
		id := suffixID(item.Key())
		if id < ids[j] {
			continue
		}
		if id > ids[j] {
			return fmt.Errorf("listing index: user %d: %w", ids[j], cache.ErrNotFound)
		}
		if j++; j%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		var u account.User
		err := item.Value(func(v []byte) error {
			var err error
			u, err = decodeUser(v)
			return err
		})
		if err != nil {
			return fmt.Errorf("user %d: %w", id, err)
		}
		if err := fn(u); err != nil {
			return err
		}
	}
	if j < len(ids) {
		return fmt.Errorf("listing index: user %d: %w", ids[j], cache.ErrNotFound)
	}
	return nil
}

// iterate calls fn for every key under prefix with its value (valid only
// during the call), checking ctx every 1024 keys.
func iterate(ctx context.Context, txn *badger.Txn, prefix []byte, fn func(k, v []byte) error) error {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefix
	opts.PrefetchValues = false
	it := txn.NewIterator(opts)
	defer it.Close()
	n := 0
	for it.Rewind(); it.Valid(); it.Next() {
		if n++; n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		item := it.Item()
		if err := item.Value(func(v []byte) error { return fn(item.Key(), v) }); err != nil {
			return err
		}
	}
	return ctx.Err()
}
