package syncer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ldapgate/ldapgate/cache"
)

// Several replicas on one shared store (SPEC §12): a directory is synced
// by one replica at a time, the one holding its lock (cache.Locker); a
// request on another replica joins that run and answers it, and a
// schedule that fires on every replica records one run.

// sharedPoll is how often a replica waiting for another's sync looks.
const sharedPoll = 100 * time.Millisecond

// scheduleSlack: a scheduled run another replica started this close
// before this replica's schedule fired is the same firing (clocks differ);
// at most half the schedule's period (Options.firing), so a frequent
// schedule still runs at every firing.
const scheduleSlack = 30 * time.Second

// syncShared is s.sync under the directory's cross-replica lock. Without a
// shared store it is s.sync.
// testHookJoinForeign, when set (tests only), is called when a request
// starts waiting for another replica's run.
var testHookJoinForeign func(run uint64)

func (s *Syncer) syncShared(ctx context.Context, dirID uint64, opt Options) (cache.Run, error) {
	lk, ok := s.store.(cache.Locker)
	if !ok {
		return s.sync(ctx, dirID, opt)
	}
	fired := time.Now()
	var joined uint64 // the other replica's run this request waits for
	for {
		lock, held, err := lk.TryLockDirectory(ctx, dirID)
		if err != nil {
			return cache.Run{}, fmt.Errorf("sync of directory %d: %w", dirID, err)
		}
		if held {
			lctx, stop := underLock(ctx, lock)
			defer stop()
			run, err := s.syncHeld(lctx, dirID, opt, lock.Release, fired, joined)
			if err != nil && errors.Is(context.Cause(lctx), ErrLockLost) {
				err = fmt.Errorf("sync of directory %d stopped: %w (%w)", dirID, ErrLockLost, err)
			}
			return run, err
		}
		if joined == 0 {
			if r, ok := s.foreignRunning(ctx, dirID); ok {
				joined = r.ID
				s.log.Info("joining the sync running on another replica", "directory_id", dirID, "run", r.ID)
				if testHookJoinForeign != nil {
					testHookJoinForeign(r.ID)
				}
			}
		}
		if joined != 0 {
			r, err := s.store.Run(ctx, joined)
			if err == nil && r.Result != cache.RunRunning {
				return r, runError(r)
			}
		}
		select {
		case <-ctx.Done():
			return cache.Run{}, fmt.Errorf("waiting for the sync of directory %d on another replica: %w", dirID, ctx.Err())
		case <-time.After(sharedPoll):
		}
	}
}

// syncHeld runs with the lock held. The run a request joined may have
// ended just before the lock was free: then that is the answer. A run
// still "running" under a free lock was left by a replica that died: it
// is closed as failed before this sync completes the work.
func (s *Syncer) syncHeld(ctx context.Context, dirID uint64, opt Options, release func(), fired time.Time, joined uint64) (cache.Run, error) {
	defer release()
	if joined != 0 {
		if r, err := s.store.Run(ctx, joined); err == nil && r.Result != cache.RunRunning {
			return r, runError(r)
		}
	}
	s.closeInterrupted(ctx, dirID, false)
	if opt.Trigger == TriggerSchedule {
		slack := scheduleSlack
		if opt.firing > 0 {
			slack = opt.firing
		}
		runs, err := s.store.Runs(ctx, dirID, 5)
		if err != nil {
			return cache.Run{}, fmt.Errorf("sync of directory %d: %w", dirID, err)
		}
		for _, r := range runs {
			if r.Trigger == TriggerSchedule && !r.DryRun && r.StartedAt.After(fired.Add(-slack)) {
				return r, runError(r) // another replica ran this firing
			}
		}
	}
	return s.sync(ctx, dirID, opt)
}

// foreignRunning returns the newest real run of the directory that is
// running and not this process's.
func (s *Syncer) foreignRunning(ctx context.Context, dirID uint64) (cache.Run, bool) {
	runs, err := s.store.Runs(ctx, dirID, 5)
	if err != nil {
		return cache.Run{}, false
	}
	for _, r := range runs {
		if !r.DryRun && s.orphaned(r) {
			return r, true
		}
	}
	return cache.Run{}, false
}

// orphaned reports whether r is recorded as running but is not one of
// this process's runs.
func (s *Syncer) orphaned(r cache.Run) bool {
	if r.Result != cache.RunRunning {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.live[r.ID]
}

// closeInterrupted records as failed the runs left "running" by a process
// that no longer runs them. On a shared store the caller holds the
// directory's lock, which covers real runs only: a dry run takes no lock,
// so another replica's may still be going and is left alone (dryToo
// false). On a store of its own this process is the only one (dryToo true).
func (s *Syncer) closeInterrupted(ctx context.Context, dirID uint64, dryToo bool) {
	runs, err := s.store.Runs(ctx, dirID, 20)
	if err != nil {
		s.log.Warn("reading runs failed", "directory_id", dirID, "err", err)
		return
	}
	for _, r := range runs {
		if !s.orphaned(r) || (r.DryRun && !dryToo) {
			continue
		}
		r.Result, r.Error = cache.RunFailed, "interrupted: the process stopped during the run"
		if err := s.store.FinishRun(ctx, r); err != nil {
			s.log.Warn("closing an interrupted run failed", "run", r.ID, "err", err)
		}
	}
}

// runError is the error a joined run's result stands for.
func runError(r cache.Run) error {
	switch r.Result {
	case cache.RunFailed:
		return errors.New(r.Error)
	case cache.RunRefused:
		return fmt.Errorf("%w: %s", ErrRefused, r.Error)
	}
	return nil
}

// lockShared waits for the directory's cross-replica lock (a migration or
// a directory removal must not interleave with another replica's sync).
// Without a shared store it holds nothing.
func (s *Syncer) lockShared(ctx context.Context, dirID uint64) (func(), error) {
	lk, ok := s.store.(cache.Locker)
	if !ok {
		return func() {}, nil
	}
	for {
		lock, held, err := lk.TryLockDirectory(ctx, dirID)
		if err != nil {
			return nil, fmt.Errorf("directory %d: %w", dirID, err)
		}
		if held {
			return lock.Release, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the sync of directory %d on another replica: %w", dirID, ctx.Err())
		case <-time.After(sharedPoll):
		}
	}
}

// streamStandby is how often a replica standing by for a directory's live
// stream tries to take it over.
const streamStandby = 2 * time.Second

// holdStream waits until this replica may follow the directory's live
// changes: on a shared store one replica streams them (the holder of the
// directory's stream lock) and the others stand by, state "off", taking
// over when it goes; every replica applying every event would write each
// change twice. false when ctx ended first.
func (s *Syncer) holdStream(ctx context.Context, st *stream) (cache.Lock, bool) {
	lk, ok := s.store.(cache.Locker)
	if !ok {
		return cache.Lock{Release: func() {}}, true
	}
	logged := false
	for {
		lock, held, err := lk.TryLockStream(ctx, st.dirID)
		if err == nil && held {
			if logged {
				s.log.Info("live stream: taking over the directory's changes", "directory_id", st.dirID)
			}
			return lock, true
		}
		if err == nil && !logged {
			s.log.Info("live stream: another replica follows this directory; standing by", "directory_id", st.dirID)
			logged = true
		}
		t := time.NewTimer(streamStandby)
		select {
		case <-ctx.Done():
			t.Stop()
			return cache.Lock{}, false
		case <-t.C:
		}
	}
}

// ErrLockLost: the cross-replica lock a sync or a live stream held ended
// without its release (its database connection broke), so another
// replica may run the same work now; this one stops.
var ErrLockLost = errors.New("the cross-replica lock was lost")

// testHookLockLost, when set (tests only), is called once a lost lock has
// cancelled the work under it.
var testHookLockLost func()

// underLock returns ctx, cancelled with cause ErrLockLost when l is lost.
// stop ends the watch (call it before releasing l).
func underLock(ctx context.Context, l cache.Lock) (context.Context, func()) {
	if l.Lost == nil {
		return ctx, func() {}
	}
	lctx, cancel := context.WithCancelCause(ctx)
	done, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-l.Lost:
			cancel(ErrLockLost)
			if testHookLockLost != nil {
				testHookLockLost()
			}
		case <-done:
		}
	}()
	return lctx, func() {
		close(done)
		<-watched
		cancel(nil)
	}
}
