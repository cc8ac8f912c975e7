package badgerstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
)

type sessionRecord struct {
	UserID    uint64    `json:"u"`
	CreatedAt time.Time `json:"c"`
	ExpiresAt time.Time `json:"e"`
	LastSeen  time.Time `json:"l"`
}

// badgerExpiry converts an expiry to badger's whole unix seconds, rounding
// up: badger drops an entry once now >= ExpiresAt, and rounding down would
// end a session up to a second early. SessionByHash compares the exact time.
func badgerExpiry(t time.Time) uint64 {
	sec := t.Unix()
	if t.Nanosecond() > 0 {
		sec++
	}
	return uint64(sec)
}

// PutSession stores (or refreshes, e.g. LastSeen) a session under its token
// hash; badger drops it at ExpiresAt. A session already expired is not
// stored: ErrNotFound, so a refresh cannot bring an ended session back.
func (s *Store) PutSession(ctx context.Context, sess cache.Session) error {
	if err := cache.CheckNewSession(sess); err != nil {
		return fmt.Errorf("put session: %w", err)
	}
	b, err := json.Marshal(sessionRecord{sess.UserID, sess.CreatedAt, sess.ExpiresAt, sess.LastSeen})
	if err != nil {
		return fmt.Errorf("put session: %w", err)
	}
	exp := badgerExpiry(sess.ExpiresAt)
	err = s.Update(ctx, func(tx *Tx) error {
		if err := tx.setEntry(&badger.Entry{Key: sessionKey(sess.TokenHash), Value: b, ExpiresAt: exp}); err != nil {
			return err
		}
		return tx.setEntry(&badger.Entry{Key: userSessionKey(sess.UserID, sess.TokenHash), ExpiresAt: exp})
	})
	if err != nil {
		return fmt.Errorf("put session: %w", err)
	}
	return nil
}

// CreateSession stores a new session like PutSession, and in the same
// transaction keeps the user at maxPerUser sessions (0: no cap) by ending
// their oldest ones (by CreatedAt); it returns the token hashes it ended,
// for the caller's caches. The user's sessions are found through the
// su/<user> index PutSession has always written, so stores written before
// the cap existed need nothing new. check, if not nil, sees the user as
// the transaction does; its error cancels the creation (a login whose
// password was changed while it was being checked).
func (s *Store) CreateSession(ctx context.Context, sess cache.Session, maxPerUser int, check func(account.User) error) ([][32]byte, error) {
	if err := cache.CheckNewSession(sess); err != nil {
		return nil, fmt.Errorf("create session: %w", err)
	}
	b, err := json.Marshal(sessionRecord{sess.UserID, sess.CreatedAt, sess.ExpiresAt, sess.LastSeen})
	if err != nil {
		return nil, fmt.Errorf("create session: %w", err)
	}
	exp := badgerExpiry(sess.ExpiresAt)
	var ended [][32]byte
	err = s.Update(ctx, func(tx *Tx) error {
		ended = ended[:0]
		if check != nil {
			u, err := tx.UserByID(sess.UserID)
			if err != nil {
				return err
			}
			if err := check(u); err != nil {
				return err
			}
		}
		if maxPerUser > 0 {
			var err error
			if ended, err = tx.trimUserSessions(sess.UserID, maxPerUser-1); err != nil {
				return err
			}
		}
		if err := tx.setEntry(&badger.Entry{Key: sessionKey(sess.TokenHash), Value: b, ExpiresAt: exp}); err != nil {
			return err
		}
		return tx.setEntry(&badger.Entry{Key: userSessionKey(sess.UserID, sess.TokenHash), ExpiresAt: exp})
	})
	if err != nil {
		return nil, fmt.Errorf("create session: %w", err)
	}
	return ended, nil
}

// trimUserSessions ends the user's oldest sessions until at most keep
// remain, and returns the hashes it ended. Index entries whose session is
// gone are dropped on the way and not counted.
func (tx *Tx) trimUserSessions(userID uint64, keep int) ([][32]byte, error) {
	prefix := key(pUserSession, userID)
	keys := tx.keys(prefix)
	if len(keys) <= keep {
		return nil, nil
	}
	type live struct {
		h       [32]byte
		created time.Time
	}
	var all []live
	for _, k := range keys {
		var h [32]byte
		copy(h[:], k[len(prefix):])
		var r sessionRecord
		err := tx.lookup(sessionKey(h), func(v []byte) error { return json.Unmarshal(v, &r) })
		switch {
		case errors.Is(err, cache.ErrNotFound):
			if err := tx.del(k); err != nil {
				return nil, err
			}
			continue
		case err != nil:
			return nil, err
		}
		all = append(all, live{h, r.CreatedAt})
	}
	if len(all) <= keep {
		return nil, nil
	}
	slices.SortStableFunc(all, func(a, b live) int { return a.created.Compare(b.created) })
	var ended [][32]byte
	for _, l := range all[:len(all)-keep] {
		if err := tx.del(sessionKey(l.h)); err != nil {
			return nil, err
		}
		if err := tx.del(userSessionKey(userID, l.h)); err != nil {
			return nil, err
		}
		ended = append(ended, l.h)
	}
	return ended, nil
}

// SessionByHash returns the session whose token hashes to h. ErrNotFound if
// there is none or it has expired.
func (s *Store) SessionByHash(ctx context.Context, h [32]byte) (cache.Session, error) {
	if err := ctx.Err(); err != nil {
		return cache.Session{}, err
	}
	var r sessionRecord
	err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(sessionKey(h))
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) error { return json.Unmarshal(v, &r) })
	})
	if errors.Is(err, badger.ErrKeyNotFound) || (err == nil && !time.Now().Before(r.ExpiresAt)) {
		return cache.Session{}, fmt.Errorf("session: %w", cache.ErrNotFound)
	}
	if err != nil {
		return cache.Session{}, fmt.Errorf("session: %w", err)
	}
	return cache.Session{TokenHash: h, UserID: r.UserID, CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt, LastSeen: r.LastSeen}, nil
}

// DeleteSession ends one session. Deleting an unknown session is not an
// error (logout is idempotent).
func (s *Store) DeleteSession(ctx context.Context, h [32]byte) error {
	err := s.Update(ctx, func(tx *Tx) error {
		v, err := tx.get(sessionKey(h))
		if errors.Is(err, cache.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		var r sessionRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		if err := tx.del(sessionKey(h)); err != nil {
			return err
		}
		return tx.del(userSessionKey(r.UserID, h))
	})
	if err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// DeleteUserSessions ends every session of a user (SPEC §5: blocking a user
// ends their sessions at once) and returns how many there were.
func (s *Store) DeleteUserSessions(ctx context.Context, userID uint64) (int, error) {
	var n int
	err := s.Update(ctx, func(tx *Tx) error {
		var err error
		n, err = tx.DeleteUserSessions(userID)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("delete sessions of user %d: %w", userID, err)
	}
	return n, nil
}

// DeleteUserSessions ends every session of a user inside the transaction,
// so a block and the end of the user's sessions commit together.
func (tx *Tx) DeleteUserSessions(userID uint64) (int, error) {
	prefix := key(pUserSession, userID)
	keys := tx.keys(prefix)
	for _, k := range keys {
		var h [32]byte
		copy(h[:], k[len(prefix):])
		if err := tx.del(sessionKey(h)); err != nil {
			return 0, err
		}
		if err := tx.del(k); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}

// CountSessions counts the sessions not yet expired (ldapgate_sessions_active).
func (s *Store) CountSessions(ctx context.Context) (int, error) {
	n := 0
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(pSession)
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
			if n%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count sessions: %w", err)
	}
	return n, nil
}
