package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/maphash"
	"sync/atomic"
	"time"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
)

// TokenLen is the length of a session token: 32 random bytes (256 bits)
// in unpadded base64url.
const TokenLen = 43

// sessEntry is a session as cached in front of the store.
type sessEntry struct {
	userID  uint64
	expires int64 // unix nanoseconds
	// lastSeen is the LastSeen last written to the store (unix ns).
	lastSeen atomic.Int64
	// touching: one request at a time writes LastSeen back.
	touching atomic.Bool
	// cred is credStamp of the user when the entry was made: a password
	// changed since ends the session even while the cache still holds it.
	cred uint64
}

// NewToken returns a fresh session token.
func NewToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("session token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// sessionClock is the time session lifetimes are measured by: time.Now,
// which tests replace to step through a TTL instead of sleeping through it.
var sessionClock = time.Now

// hashToken is the only form of a token that is stored.
func hashToken(tok []byte) [32]byte { return sha256.Sum256(tok) }

// errCredChanged: the password a login checked was changed before its
// session was stored.
var errCredChanged = errors.New("password changed during login")

// credStamp fingerprints the user's password hash (empty for directory
// users) so that cached sessions and Basic successes can tell, from the
// user record each request reads anyway, that the password they were made
// with is no longer the user's. Keyed per process: not a hash of the hash
// anyone could compute.
func (s *Service) credStamp(u *account.User) uint64 {
	return maphash.String(s.credSeed, u.PasswordHash)
}

// createSession stores a new session for u, whose PasswordHash is the one
// the login's password was just checked against, and returns its token.
// Beyond session.max_per_user the user's oldest sessions end (SPEC §5).
func (s *Service) createSession(ctx context.Context, u account.User, st *settings) (string, time.Time, error) {
	tok, err := NewToken()
	if err != nil {
		return "", time.Time{}, err
	}
	now := sessionClock()
	exp := now.Add(st.ttl)
	h := hashToken([]byte(tok))
	ended, err := s.store.CreateSession(ctx, cache.Session{
		TokenHash: h, UserID: u.ID, CreatedAt: now, ExpiresAt: exp, LastSeen: now,
	}, st.maxSessionsPerUser, func(cur account.User) error {
		if cur.PasswordHash != u.PasswordHash {
			return errCredChanged
		}
		return nil
	})
	if errors.Is(err, errCredChanged) {
		return "", time.Time{}, ErrBadCredentials
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("create session: %w", err)
	}
	for _, old := range ended {
		s.sessions.Remove(old)
	}
	if len(ended) > 0 {
		s.log.Info("oldest sessions ended: session.max_per_user reached", "user_id", u.ID, "ended", len(ended))
	}
	e := &sessEntry{userID: u.ID, expires: exp.UnixNano(), cred: s.credStamp(&u)}
	e.lastSeen.Store(now.UnixNano())
	s.sessions.Add(h, e)
	return tok, exp, nil
}

// CheckSession returns the active user whose session token is tok.
// ErrNoSession when the token is malformed, unknown, expired or idle too
// long, or when its user is gone or not active: a block or deletion ends
// every session of the user on the very next request (SPEC §5), whoever
// made it (a sync, an admin).
//
// On a cache hit this does no store read beyond the user LRU and
// allocates nothing; it writes LastSeen back at most once a minute.
func (s *Service) CheckSession(ctx context.Context, tok []byte) (account.User, error) {
	if !ValidToken(tok) {
		return account.User{}, ErrNoSession
	}
	h := hashToken(tok)
	e, ok := s.sessions.Get(h)
	if ok {
		s.sessHit.Inc()
	} else {
		s.sessMiss.Inc()
		var err error
		if e, err = s.loadSession(ctx, h); err != nil {
			return account.User{}, err
		}
	}
	st := s.st.Load()
	now := sessionClock().UnixNano()
	last := e.lastSeen.Load()
	if now >= e.expires || (st.idle > 0 && now-last >= int64(st.idle)) {
		s.endSession(ctx, h)
		return account.User{}, ErrNoSession
	}
	u, err := s.store.UserByID(ctx, e.userID)
	switch {
	case errors.Is(err, cache.ErrNotFound):
		_ = s.EndUserSessions(ctx, e.userID)
		return account.User{}, ErrNoSession
	case err != nil:
		return account.User{}, fmt.Errorf("session user: %w", err)
	case !u.Active():
		_ = s.EndUserSessions(ctx, e.userID)
		return account.User{}, ErrNoSession
	}
	if !ok {
		// A stored session outlives no password change (the store ends
		// them in the change's own commit), but this one was read before
		// the user: read it again so a change in between is not missed.
		if _, err := s.store.SessionByHash(ctx, h); err != nil {
			if errors.Is(err, cache.ErrNotFound) {
				return account.User{}, ErrNoSession
			}
			return account.User{}, fmt.Errorf("session: %w", err)
		}
		e.cred = s.credStamp(&u)
		s.sessions.Add(h, e)
	} else if e.cred != s.credStamp(&u) {
		// The password changed since this session was made (the store
		// ended it then). Only this entry goes: sessions made with the
		// new password are the user's to keep.
		s.endSession(ctx, h)
		return account.User{}, ErrNoSession
	}
	if now-last >= int64(touchEvery) && e.touching.CompareAndSwap(false, true) {
		err := s.touch(ctx, h, e, now)
		e.touching.Store(false)
		if err != nil {
			return account.User{}, err
		}
	}
	return u, nil
}

// loadSession reads a session the cache does not hold; the caller caches
// it once it has checked its user.
func (s *Service) loadSession(ctx context.Context, h [32]byte) (*sessEntry, error) {
	sess, err := s.store.SessionByHash(ctx, h)
	if errors.Is(err, cache.ErrNotFound) {
		return nil, ErrNoSession
	}
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	e := &sessEntry{userID: sess.UserID, expires: sess.ExpiresAt.UnixNano()}
	e.lastSeen.Store(sess.LastSeen.UnixNano())
	return e, nil
}

// touch writes LastSeen back. It first re-reads the stored session: a
// session ended behind the cache's back (a sync that blocked its user in
// the same transaction, then an unblock) must not be brought back by
// this write, and this re-read bounds how long such an entry lives.
func (s *Service) touch(ctx context.Context, h [32]byte, e *sessEntry, now int64) error {
	sess, err := s.store.SessionByHash(ctx, h)
	if errors.Is(err, cache.ErrNotFound) {
		s.sessions.Remove(h)
		return ErrNoSession
	}
	if err != nil {
		return fmt.Errorf("session: %w", err)
	}
	sess.LastSeen = time.Unix(0, now)
	if err := s.store.PutSession(ctx, sess); err != nil {
		if errors.Is(err, cache.ErrNotFound) {
			s.sessions.Remove(h)
			return ErrNoSession
		}
		return fmt.Errorf("session: %w", err)
	}
	e.lastSeen.Store(now)
	return nil
}

func (s *Service) endSession(ctx context.Context, h [32]byte) {
	s.sessions.Remove(h)
	if err := s.store.DeleteSession(ctx, h); err != nil {
		s.log.Warn("ending session", "err", err)
	}
}

// Logout ends the session of tok. Unknown or malformed tokens are not an
// error: logout is idempotent.
func (s *Service) Logout(ctx context.Context, tok string) error {
	if !ValidToken([]byte(tok)) {
		return nil
	}
	h := hashToken([]byte(tok))
	s.sessions.Remove(h)
	if err := s.store.DeleteSession(ctx, h); err != nil {
		return fmt.Errorf("logout: %w", err)
	}
	return nil
}

// EndUserSessions ends every session of a user, in the store and in the
// cache, and forgets their cached Basic-auth successes. The admin API
// calls it after a block or delete.
func (s *Service) EndUserSessions(ctx context.Context, userID uint64) error {
	// Store first: a concurrent cache miss then finds nothing to reload.
	_, err := s.store.DeleteUserSessions(ctx, userID)
	s.forgetUser(userID)
	if err != nil {
		return fmt.Errorf("end sessions of user %d: %w", userID, err)
	}
	return nil
}

// forgetUser drops the user's cached sessions and Basic-auth successes.
func (s *Service) forgetUser(userID uint64) {
	for _, k := range s.sessions.Keys() {
		if e, ok := s.sessions.Peek(k); ok && e.userID == userID {
			s.sessions.Remove(k)
		}
	}
	for _, k := range s.basic.Keys() {
		if e, ok := s.basic.Peek(k); ok && e.userID == userID {
			s.basic.Remove(k)
		}
	}
}
