package syncer

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/cache/pgstore"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/directory"
	"github.com/ldapgate/ldapgate/internal/pgtest"
)

// TestSharedStoreSingleFlight: two replicas on one PostgreSQL store (SPEC
// §12). A request on B while A syncs joins A's run; B's start does not
// close A's live run; a schedule firing on both records one run.
func TestSharedStoreSingleFlight(t *testing.T) {
	dsn := pgtest.DSN(t)
	e := newEnv(t)
	storeA := openShared(t, dsn)
	a := New(storeA, e.dirs, config.DefaultRoles(), testLogger(t), nil)
	a.batch = 1 // several batches: a sync to pause in the middle of
	b := New(openShared(t, dsn), e.dirs, config.DefaultRoles(), testLogger(t), nil)

	paused, resume := make(chan struct{}), make(chan struct{})
	var once sync.Once
	testHookAfterBatch = func(int) { once.Do(func() { close(paused); <-resume }) }
	t.Cleanup(func() { testHookAfterBatch = nil })

	type result struct {
		run cache.Run
		err error
	}
	sync := func(s *Syncer, trigger string) chan result {
		ch := make(chan result, 1)
		go func() {
			r, err := s.Sync(context.Background(), testDirID, Options{Trigger: trigger})
			ch <- result{r, err}
		}()
		return ch
	}
	joinedForeign := make(chan uint64, 1)
	testHookJoinForeign = func(run uint64) { joinedForeign <- run }
	t.Cleanup(func() { testHookJoinForeign = nil })
	resA := sync(a, TriggerAPI)
	<-paused
	b.RecoverRuns(context.Background()) // a replica starting while A syncs
	resB := sync(b, TriggerAPI)
	// Let A go only once B waits for its run: resumed earlier, A could end
	// before B looked, and B would rightly start a run of its own (the CI
	// failure "B answered run 2, A ran 1").
	select {
	case <-joinedForeign:
	case <-time.After(10 * time.Second):
		t.Fatal("B never started waiting for A's run")
	}
	testHookJoinForeign = nil
	close(resume)
	ra, rb := <-resA, <-resB
	if ra.err != nil || rb.err != nil {
		t.Fatalf("syncs: A %v, B %v", ra.err, rb.err)
	}
	if ra.run.ID != rb.run.ID || rb.run.Result != cache.RunSuccess {
		t.Fatalf("B answered run %d (%s), A ran %d: B must join A's run", rb.run.ID, rb.run.Result, ra.run.ID)
	}
	runs, err := storeA.Runs(context.Background(), testDirID, 0)
	if err != nil || len(runs) != 1 {
		t.Fatalf("runs: %d %v, want 1", len(runs), err)
	}

	// A schedule fires on both replicas: one run.
	sa := <-sync(a, TriggerSchedule)
	sb := <-sync(b, TriggerSchedule)
	if sa.err != nil || sb.err != nil || sa.run.ID != sb.run.ID {
		t.Fatalf("scheduled syncs: A run %d (%v), B run %d (%v); want one run", sa.run.ID, sa.err, sb.run.ID, sb.err)
	}
	if runs, _ := storeA.Runs(context.Background(), testDirID, 0); len(runs) != 2 {
		t.Errorf("runs after a schedule fired on both: %d, want 2", len(runs))
	}
}

// TestSharedStoreOneStream: on a shared store one replica follows a
// directory's live changes; the other stands by and takes over when the
// first stops (SPEC §12: a change is applied once, not once per replica).
func TestSharedStoreOneStream(t *testing.T) {
	dsn := pgtest.DSN(t)
	e := newEnv(t)
	stores := []*pgstore.Store{openShared(t, dsn), openShared(t, dsn)}
	syncers := []*Syncer{
		New(stores[0], e.dirs, config.DefaultRoles(), testLogger(t), nil),
		New(stores[1], e.dirs, config.DefaultRoles(), testLogger(t), nil),
	}
	if _, err := syncers[0].Sync(context.Background(), testDirID, Options{}); err != nil {
		t.Fatal(err) // live waits for a directory's first sync
	}
	stops := make([]func(), 2)
	for i, s := range syncers {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = s.Run(ctx) }()
		stops[i] = func() { cancel(); <-done }
		t.Cleanup(stops[i])
	}
	connected := func(s *Syncer) bool {
		st := s.LiveStatus(testDirID).State
		return st == directory.LiveStreaming || st == directory.LivePolling
	}
	holder := -1
	pollFor(t, "one replica streaming", func() bool {
		for i, s := range syncers {
			if connected(s) {
				holder = i
				return true
			}
		}
		return false
	})
	other := 1 - holder
	if connected(syncers[other]) {
		t.Fatal("both replicas follow the directory's changes")
	}

	// The holder's lock connection breaks (PostgreSQL restarted, the
	// backend ended): within a few seconds again exactly one replica
	// follows the directory, not both.
	lost := make(chan struct{})
	var lostOnce sync.Once
	testHookLockLost = func() { lostOnce.Do(func() { close(lost) }) }
	t.Cleanup(func() { testHookLockLost = nil })
	var ended bool
	if err := stores[0].Pool().QueryRow(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_locks
		WHERE locktype = 'advisory' AND classid = $1 AND objid = $2 AND granted`, 0x6c73, testDirID).Scan(&ended); err != nil || !ended {
		t.Fatalf("ending the stream lock's connection: %v %v", ended, err)
	}
	select {
	case <-lost:
	case <-time.After(30 * time.Second):
		t.Fatal("the holder never heard that its stream lock ended")
	}
	one := func() bool { return connected(syncers[0]) != connected(syncers[1]) }
	pollFor(t, "one replica streaming after the lock was lost", one)
	for range 20 { // and it stays one
		if !one() {
			t.Fatalf("after the lock was lost: replica 0 streaming %v, replica 1 %v", connected(syncers[0]), connected(syncers[1]))
		}
		time.Sleep(100 * time.Millisecond)
	}
	holder, other = 0, 1
	if connected(syncers[1]) {
		holder, other = 1, 0
	}
	stops[holder]()
	pollFor(t, "the other replica taking the stream over", func() bool { return connected(syncers[other]) })
}

func pollFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSharedStoreLockLostStopsTheSync: the connection holding A's sync
// lock breaks mid-apply (PostgreSQL restarted, an operator ended the
// backend), so another replica may take the lock and sync too. A stops
// before its next batch, with ErrLockLost, and B's sync completes the
// work.
func TestSharedStoreLockLostStopsTheSync(t *testing.T) {
	dsn := pgtest.DSN(t)
	e := newEnv(t)
	storeA, storeB := openShared(t, dsn), openShared(t, dsn)
	a := New(storeA, e.dirs, config.DefaultRoles(), testLogger(t), nil)
	a.batch = 1
	b := New(storeB, e.dirs, config.DefaultRoles(), testLogger(t), nil)

	paused, resume := make(chan struct{}), make(chan struct{})
	var once sync.Once
	testHookAfterBatch = func(int) { once.Do(func() { close(paused); <-resume }) }
	t.Cleanup(func() { testHookAfterBatch = nil })
	lost := make(chan struct{})
	var lostOnce sync.Once
	testHookLockLost = func() { lostOnce.Do(func() { close(lost) }) }
	t.Cleanup(func() { testHookLockLost = nil })
	done := make(chan error, 1)
	go func() {
		_, err := a.Sync(context.Background(), testDirID, Options{Trigger: TriggerAPI})
		done <- err
	}()
	<-paused
	var ended bool
	if err := storeB.Pool().QueryRow(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_locks
		WHERE locktype = 'advisory' AND objid = $1 AND granted`, testDirID).Scan(&ended); err != nil || !ended {
		t.Fatalf("ending A's lock connection: %v %v", ended, err)
	}
	select {
	case <-lost:
	case <-time.After(30 * time.Second):
		t.Fatal("A never heard that its lock ended")
	}
	close(resume)
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("A's sync went on without its lock")
	}
	if !errors.Is(err, ErrLockLost) {
		t.Fatalf("A's sync: %v, want ErrLockLost", err)
	}
	var n int
	if err := storeB.Pool().QueryRow(context.Background(), `SELECT count(*) FROM users`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if want := len(e.fx.Users); n >= want {
		t.Fatalf("A wrote %d users after losing its lock (of %d)", n, want)
	}
	run, err := b.Sync(context.Background(), testDirID, Options{Trigger: TriggerAPI})
	if err != nil || run.Result != cache.RunSuccess {
		t.Fatalf("B's sync: %+v %v", run, err)
	}
}

// openShared opens one replica's store on the shared database dsn.
func openShared(t *testing.T, dsn string) *pgstore.Store {
	t.Helper()
	s, err := pgstore.Open(context.Background(), dsn, pgstore.Options{Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
