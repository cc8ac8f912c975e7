package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
)

// PutSession stores a session as it is (migrate-store, tests).
func (s *Store) PutSession(ctx context.Context, sess cache.Session) error {
	if err := cache.CheckNewSession(sess); err != nil {
		return fmt.Errorf("put session: %w", err)
	}
	err := s.Update(ctx, func(t cache.Txn) error { return t.(*Tx).putSession(sess) })
	if err != nil {
		return fmt.Errorf("put session: %w", err)
	}
	return nil
}

func (tx *Tx) putSession(sess cache.Session) error {
	_, err := tx.exec(`INSERT INTO sessions (token_hash, user_id, created_at, expires_at, last_seen)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (token_hash) DO UPDATE SET user_id = excluded.user_id,
		created_at = excluded.created_at, expires_at = excluded.expires_at, last_seen = excluded.last_seen`,
		sess.TokenHash[:], int64(sess.UserID), pgTime(sess.CreatedAt), pgTime(sess.ExpiresAt), pgTime(sess.LastSeen))
	return err
}

// CreateSession: see badgerstore.Store.CreateSession (the per-user cap ends
// the oldest sessions in the same transaction).
func (s *Store) CreateSession(ctx context.Context, sess cache.Session, maxPerUser int, check func(account.User) error) ([][32]byte, error) {
	if err := cache.CheckNewSession(sess); err != nil {
		return nil, fmt.Errorf("create session: %w", err)
	}
	var ended [][32]byte
	err := s.Update(ctx, func(t cache.Txn) error {
		tx := t.(*Tx)
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
			// Expired ones first: they count for nobody.
			if _, err := tx.exec(`DELETE FROM sessions WHERE user_id = $1 AND expires_at <= now()`, int64(sess.UserID)); err != nil {
				return err
			}
			if err := tx.flushPending(); err != nil {
				return err
			}
			rows, err := tx.tx.Query(tx.ctx, `DELETE FROM sessions WHERE token_hash IN (
				SELECT token_hash FROM sessions WHERE user_id = $1 ORDER BY created_at DESC, token_hash OFFSET $2)
				RETURNING token_hash`, int64(sess.UserID), maxPerUser-1)
			if err != nil {
				return tx.fail(err)
			}
			for rows.Next() {
				var h []byte
				if err := rows.Scan(&h); err != nil {
					rows.Close()
					return tx.fail(err)
				}
				ended = append(ended, [32]byte(h))
				tx.noteSession(h)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return tx.fail(err)
			}
		}
		return tx.putSession(sess)
	})
	if err != nil {
		return nil, fmt.Errorf("create session: %w", err)
	}
	return ended, nil
}

// SessionByHash: see cache.Backend. An expired session is not found.
func (s *Store) SessionByHash(ctx context.Context, h [32]byte) (cache.Session, error) {
	out := cache.Session{TokenHash: h}
	var uid int64
	err := s.oneRead(ctx, func(tx *Tx) error {
		return tx.queryRow(`SELECT user_id, created_at, expires_at, last_seen FROM sessions WHERE token_hash = $1`,
			[]any{h[:]}, &uid, &out.CreatedAt, &out.ExpiresAt, &out.LastSeen)
	})
	if err == nil && !time.Now().Before(out.ExpiresAt) {
		err = cache.ErrNotFound
	}
	if err != nil {
		return cache.Session{}, fmt.Errorf("session: %w", err)
	}
	out.UserID = uint64(uid)
	out.CreatedAt, out.ExpiresAt, out.LastSeen = out.CreatedAt.UTC(), out.ExpiresAt.UTC(), out.LastSeen.UTC()
	return out, nil
}

// DeleteSession: see cache.Backend (no such session: nil).
func (s *Store) DeleteSession(ctx context.Context, h [32]byte) error {
	err := s.Update(ctx, func(t cache.Txn) error {
		tx := t.(*Tx)
		n, err := tx.exec(`DELETE FROM sessions WHERE token_hash = $1`, h[:])
		if n > 0 {
			tx.noteSession(h[:])
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// DeleteUserSessions: see cache.Backend.
func (s *Store) DeleteUserSessions(ctx context.Context, userID uint64) (int, error) {
	var n int
	err := s.Update(ctx, func(tx cache.Txn) error {
		var err error
		n, err = tx.DeleteUserSessions(userID)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("delete sessions of user %d: %w", userID, err)
	}
	return n, nil
}

// CountSessions counts unexpired sessions.
func (s *Store) CountSessions(ctx context.Context) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM sessions WHERE expires_at > now()`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count sessions: %w", err)
	}
	return n, nil
}
