package pgstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/ldapgate/ldapgate/internal/pgtest"
)

// TestLockLostWithItsConnection: when the connection holding a sync lock
// breaks (PostgreSQL restarted, or an operator ended the backend), the
// holder hears it within a couple of seconds, another replica can take
// the lock, and the first holder's release does not free the new one.
func TestLockLostWithItsConnection(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	a, b, c := open(t, dsn), open(t, dsn), open(t, dsn)
	const dir = 4242
	lock, ok, err := a.TryLockDirectory(ctx, dir)
	if err != nil || !ok {
		t.Fatalf("A's lock: %v %v", ok, err)
	}
	if _, ok, _ := b.TryLockDirectory(ctx, dir); ok {
		t.Fatal("B took a held lock")
	}
	select {
	case <-lock.Lost:
		t.Fatal("lost while its connection lives")
	case <-time.After(1500 * time.Millisecond):
	}
	var ended bool
	if err := b.Pool().QueryRow(ctx, `SELECT pg_terminate_backend(pid) FROM pg_locks
		WHERE locktype = 'advisory' AND objid = $1 AND granted`, dir).Scan(&ended); err != nil || !ended {
		t.Fatalf("ending A's lock connection: %v %v", ended, err)
	}
	select {
	case <-lock.Lost:
	case <-time.After(15 * time.Second):
		t.Fatal("A never heard that its lock ended")
	}
	lockB, ok, err := b.TryLockDirectory(ctx, dir)
	if err != nil || !ok {
		t.Fatalf("B's lock after A's ended: %v %v", ok, err)
	}
	lock.Release() // A's late release must not free B's lock
	if _, ok, _ := c.TryLockDirectory(ctx, dir); ok {
		t.Fatal("C took the lock B holds after A's release")
	}
	lockB.Release()
	lockC, ok, err := c.TryLockDirectory(ctx, dir)
	if err != nil || !ok {
		t.Fatalf("C after B's release: %v %v", ok, err)
	}
	lockC.Release()
}
