package pgstore_test

import (
	"context"
	"errors"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/internal/pgtest"
)

// changes collects what a replica's change feed reports.
type changes struct {
	mu  sync.Mutex
	got []cache.Change
	ch  chan struct{}
}

func watch(s cache.Watcher) *changes {
	c := &changes{ch: make(chan struct{}, 1000)}
	s.Watch(func(x cache.Change) {
		c.mu.Lock()
		c.got = append(c.got, x)
		c.mu.Unlock()
		select {
		case c.ch <- struct{}{}:
		default:
		}
	})
	return c
}

// waitFor waits (generously: CI is loaded) until a reported change matches.
func (c *changes) waitFor(t *testing.T, what string, match func(cache.Change) bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		for _, x := range c.got {
			if match(x) {
				c.mu.Unlock()
				return
			}
		}
		c.mu.Unlock()
		select {
		case <-c.ch:
		case <-deadline:
			t.Fatalf("no change feed report of %s", what)
		}
	}
}

func pollUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestChangesReachOtherReplica: a block, a logout and an "end sessions"
// committed by replica B reach replica A's caches through the feed.
func TestChangesReachOtherReplica(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	a, b := open(t, dsn), open(t, dsn)
	seen := watch(a)
	u, err := b.CreateUser(ctx, account.User{Username: "ann", Role: "user", State: account.StateActive, Source: account.SourceLDAP, DirectoryID: 1, LDAPUUID: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.UserByID(ctx, u.ID); err != nil { // now cached on A
		t.Fatal(err)
	}
	if _, err := b.UpdateUser(ctx, u.ID, func(x *account.User) error { x.State = account.StateBlocked; return nil }); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, "A to see B's block", func() bool {
		got, err := a.UserByID(ctx, u.ID)
		return err == nil && got.State == account.StateBlocked
	})
	now := time.Now()
	for i := byte(1); i <= 2; i++ {
		if _, err := b.CreateSession(ctx, cache.Session{TokenHash: [32]byte{i}, UserID: u.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour), LastSeen: now}, 0, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.DeleteSession(ctx, [32]byte{1}); err != nil {
		t.Fatal(err)
	}
	seen.waitFor(t, "B's logout", func(c cache.Change) bool { return c.Session == [32]byte{1} })
	if _, err := b.DeleteUserSessions(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	seen.waitFor(t, "B's end of the user's sessions", func(c cache.Change) bool { return c.UserID == u.ID })
}

// TestFailClosedWhenCutOff: a replica cut off from PostgreSQL stops
// answering from its cache (cache.ErrUnavailable, the 503 of SPEC §12),
// drops it, and recovers by itself when the server is back.
func TestFailClosedWhenCutOff(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	pu, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := pgtest.NewCutProxy(t, pu.Host)
	pu.Host = proxy.Addr()
	a := open(t, pu.String())
	seen := watch(a)
	u, err := a.CreateUser(ctx, account.User{Username: "cut", Role: "user", State: account.StateActive, Source: account.SourceLocal})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.UserByID(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	proxy.Cut()
	pollUntil(t, "the cached user to be refused", func() bool {
		_, err := a.UserByID(ctx, u.ID)
		return errors.Is(err, cache.ErrUnavailable)
	})
	seen.waitFor(t, "the cache flush", func(c cache.Change) bool { return c.All })
	if _, err := a.SessionByHash(ctx, [32]byte{7}); !errors.Is(err, cache.ErrUnavailable) {
		t.Errorf("SessionByHash while cut off: %v, want ErrUnavailable", err)
	}
	if _, err := a.CreateSession(ctx, cache.Session{TokenHash: [32]byte{7}, UserID: u.ID, ExpiresAt: time.Now().Add(time.Hour)}, 0, nil); !errors.Is(err, cache.ErrUnavailable) {
		t.Errorf("CreateSession while cut off: %v, want ErrUnavailable", err)
	}
	proxy.Restore()
	pollUntil(t, "recovery", func() bool {
		got, err := a.UserByID(ctx, u.ID)
		return err == nil && got.ID == u.ID
	})
}
