package badgerstore

import (
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
)

func TestSessions(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	now := time.Now().UTC().Truncate(time.Millisecond)
	hash := func(tok string) [32]byte { return sha256.Sum256([]byte(tok)) }

	long := cache.Session{TokenHash: hash("long"), UserID: 1, CreatedAt: now, ExpiresAt: now.Add(time.Hour), LastSeen: now}
	short := cache.Session{TokenHash: hash("short"), UserID: 1, CreatedAt: now, ExpiresAt: now.Add(1200 * time.Millisecond), LastSeen: now}
	other := cache.Session{TokenHash: hash("other"), UserID: 2, CreatedAt: now, ExpiresAt: now.Add(time.Hour), LastSeen: now}
	for _, sess := range []cache.Session{long, short, other} {
		if err := s.PutSession(ctx, sess); err != nil {
			t.Fatalf("PutSession: %v", err)
		}
	}
	got, err := s.SessionByHash(ctx, long.TokenHash)
	if err != nil || got.UserID != 1 || !got.ExpiresAt.Equal(long.ExpiresAt) || got.TokenHash != long.TokenHash {
		t.Fatalf("SessionByHash: %+v, %v", got, err)
	}
	// Refresh LastSeen.
	long.LastSeen = now.Add(time.Minute)
	if err := s.PutSession(ctx, long); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.SessionByHash(ctx, long.TokenHash); !got.LastSeen.Equal(long.LastSeen) {
		t.Fatalf("LastSeen not refreshed: %v", got.LastSeen)
	}
	if n, err := s.CountSessions(ctx); err != nil || n != 3 {
		t.Fatalf("CountSessions = %d, %v; want 3", n, err)
	}

	// Expiry: the exact time is honoured at once; badger's TTL (whole
	// seconds, rounded up) removes the entry shortly after.
	time.Sleep(time.Until(short.ExpiresAt) + 10*time.Millisecond)
	if _, err := s.SessionByHash(ctx, short.TokenHash); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("expired session: %v, want ErrNotFound", err)
	}
	time.Sleep(time.Until(time.Unix(int64(badgerExpiry(short.ExpiresAt)), 0)) + 10*time.Millisecond)
	if n, _ := s.CountSessions(ctx); n != 2 {
		t.Fatalf("CountSessions after expiry = %d, want 2", n)
	}
	if err := s.PutSession(ctx, short); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("PutSession of an expired session: %v, want ErrNotFound", err)
	}
	if _, err := s.SessionByHash(ctx, short.TokenHash); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("expired session came back: %v", err)
	}

	// A second session of user 1, then end them all.
	second := long
	second.TokenHash = hash("second")
	if err := s.PutSession(ctx, second); err != nil {
		t.Fatal(err)
	}
	n, err := s.DeleteUserSessions(ctx, 1)
	if err != nil || n != 2 {
		t.Fatalf("DeleteUserSessions = %d, %v; want 2 (the expired one is gone already)", n, err)
	}
	for _, h := range [][32]byte{long.TokenHash, second.TokenHash} {
		if _, err := s.SessionByHash(ctx, h); !errors.Is(err, cache.ErrNotFound) {
			t.Fatalf("session of user 1 survived: %v", err)
		}
	}
	if _, err := s.SessionByHash(ctx, other.TokenHash); err != nil {
		t.Fatalf("session of user 2 was ended too: %v", err)
	}
	if n, _ := s.DeleteUserSessions(ctx, 1); n != 0 {
		t.Fatalf("second DeleteUserSessions = %d", n)
	}

	if err := s.DeleteSession(ctx, other.TokenHash); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSession(ctx, other.TokenHash); err != nil {
		t.Fatalf("deleting a deleted session: %v", err)
	}
	if n, _ := s.CountSessions(ctx); n != 0 {
		t.Fatalf("CountSessions at end = %d", n)
	}
	if err := s.PutSession(ctx, cache.Session{TokenHash: hash("x"), ExpiresAt: now.Add(time.Hour)}); err == nil {
		t.Fatal("session without user accepted")
	}
}

// Sessions and their expiry survive a restart.
func TestSessionsPersist(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir)
	h := sha256.Sum256([]byte("tok"))
	if err := s.PutSession(ctx, cache.Session{TokenHash: h, UserID: 5, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := openTest(t, dir)
	if got, err := s2.SessionByHash(ctx, h); err != nil || got.UserID != 5 {
		t.Fatalf("after reopen: %+v, %v", got, err)
	}
	if n, _ := s2.DeleteUserSessions(ctx, 5); n != 1 {
		t.Fatalf("user index after reopen: %d sessions", n)
	}
}

// CreateSession keeps a user at maxPerUser sessions by ending the oldest
// (by CreatedAt, whatever the order they were written in), through the
// su/ index every store already has; other users are untouched; check can
// cancel the creation.
func TestCreateSessionCap(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	u := mustCreate(t, s, localUser("capped@local", "user"))
	now := time.Now().UTC()
	mk := func(tok string, age time.Duration, user uint64) cache.Session {
		return cache.Session{TokenHash: sha256.Sum256([]byte(tok)), UserID: user, CreatedAt: now.Add(-age),
			ExpiresAt: now.Add(time.Hour), LastSeen: now}
	}
	// Written by PutSession, as before the cap existed; "b" is the oldest.
	for _, sess := range []cache.Session{mk("a", 2*time.Minute, u.ID), mk("b", 3*time.Minute, u.ID), mk("x", time.Hour, u.ID+1)} {
		if err := s.PutSession(ctx, sess); err != nil {
			t.Fatal(err)
		}
	}
	ended, err := s.CreateSession(ctx, mk("c", 0, u.ID), 2, nil)
	if err != nil || len(ended) != 1 || ended[0] != sha256.Sum256([]byte("b")) {
		t.Fatalf("CreateSession: ended %x, %v; want b", ended, err)
	}
	for tok, want := range map[string]bool{"a": true, "b": false, "c": true, "x": true} {
		if _, err := s.SessionByHash(ctx, sha256.Sum256([]byte(tok))); (err == nil) != want {
			t.Errorf("session %s: %v, want present=%v", tok, err, want)
		}
	}
	stop := errors.New("stop")
	if _, err := s.CreateSession(ctx, mk("d", 0, u.ID), 2, func(got account.User) error {
		if got.ID != u.ID {
			t.Errorf("check got user %d", got.ID)
		}
		return stop
	}); !errors.Is(err, stop) {
		t.Fatalf("check's error: %v", err)
	}
	if _, err := s.SessionByHash(ctx, sha256.Sum256([]byte("a"))); err != nil {
		t.Fatalf("a cancelled creation ended a session: %v", err)
	}
}

// A changed password hash ends the user's sessions in the same commit,
// whoever writes it; any other update leaves them.
func TestPasswordHashChangeEndsSessions(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	u := mustCreate(t, s, localUser("pw@local", "user"))
	now := time.Now().UTC()
	h := sha256.Sum256([]byte("tok"))
	if err := s.PutSession(ctx, cache.Session{TokenHash: h, UserID: u.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour), LastSeen: now}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateUser(ctx, u.ID, func(x *account.User) error { x.Email = "pw@example.com"; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SessionByHash(ctx, h); err != nil {
		t.Fatalf("an email change ended the session: %v", err)
	}
	if _, err := s.UpdateUser(ctx, u.ID, func(x *account.User) error { x.PasswordHash += "x"; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SessionByHash(ctx, h); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("session after a password change: %v", err)
	}
}
