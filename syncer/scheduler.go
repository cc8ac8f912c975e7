package syncer

import (
	"context"
	"errors"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/schedule"
)

// Run runs the schedules of every directory with auto_sync on until ctx
// ends (robfig/cron, schedules parsed by package schedule, times in the
// server's zone). First it closes the runs a crash left "running". On
// return no scheduled sync is running: cron is stopped and its jobs waited
// for; a sync in flight sees ctx cancelled and stops between batches, each
// batch being one transaction, so no batch is half-written.
func (s *Syncer) Run(ctx context.Context) error {
	s.RecoverRuns(ctx)
	s.RefreshUserMetrics(ctx)

	c := cron.New(cron.WithLocation(time.Local))
	s.sched.Lock()
	if s.sched.cron != nil {
		s.sched.Unlock()
		return errors.New("syncer: Run is already running")
	}
	s.sched.cron, s.sched.ctx = c, ctx
	s.rescheduleLocked()
	s.sched.Unlock()

	c.Start()
	s.startLive(ctx)
	<-ctx.Done()
	s.stopLive()

	s.sched.Lock()
	s.sched.cron, s.sched.ctx, s.sched.entries = nil, nil, nil
	s.sched.Unlock()
	<-c.Stop().Done()
	return nil
}

// Reschedule re-reads the directory set (after a reload or an API change)
// and replaces the scheduled jobs and the live-change streams whose
// directory changed. A no-op when Run is not running.
func (s *Syncer) Reschedule() {
	s.sched.Lock()
	if s.sched.cron != nil {
		s.rescheduleLocked()
	}
	s.sched.Unlock()
	s.refreshLive()
}

func (s *Syncer) rescheduleLocked() {
	c := s.sched.cron
	for _, id := range s.sched.entries {
		c.Remove(id)
	}
	s.sched.entries = s.sched.entries[:0]
	ctx := s.sched.ctx
	for _, e := range s.dirs.List() {
		cfg := e.Config
		if !cfg.AutoSyncEnabled() {
			continue
		}
		sch, err := schedule.Parse(cfg.Schedule)
		if err != nil {
			// Config validation rejects bad schedules; an API-created
			// directory slipping through must not stop the others.
			s.log.Error("schedule ignored", "directory", cfg.Name, "err", err)
			continue
		}
		dirID, name := cfg.ID, cfg.Name
		id := c.Schedule(sch, cron.FuncJob(func() {
			// The job looks the directory up when it fires: it may have
			// been edited or removed since it was scheduled.
			if _, ok := s.dirs.ByID(dirID); !ok {
				return
			}
			next := sch.Next(time.Now())
			opt := Options{Trigger: TriggerSchedule, firing: min(scheduleSlack, sch.Next(next).Sub(next)/2)}
			if _, err := s.Sync(ctx, dirID, opt); err != nil {
				s.log.Debug("scheduled sync ended with an error", "directory", name, "err", err)
			}
		}))
		s.sched.entries = append(s.sched.entries, id)
		// Not c.Entry(id).Next: cron fills that in only once it runs, and
		// the first schedule is made before c.Start.
		s.log.Info("sync scheduled", "directory", name, "schedule", cfg.Schedule, "next", sch.Next(time.Now()))
	}
}

// NextRuns returns the next scheduled time of each scheduled directory, by
// id (for the admin API and tests). Empty when Run is not running.
func (s *Syncer) NextRuns() map[uint64]time.Time {
	s.sched.Lock()
	defer s.sched.Unlock()
	out := map[uint64]time.Time{}
	if s.sched.cron == nil {
		return out
	}
	now := time.Now()
	for _, e := range s.dirs.List() {
		if !e.Config.AutoSyncEnabled() {
			continue
		}
		if sch, err := schedule.Parse(e.Config.Schedule); err == nil {
			out[e.Config.ID] = sch.Next(now)
		}
	}
	return out
}

// RecoverRuns closes the runs a previous process left "running" (killed
// mid-sync): they are recorded as failed. Their committed batches stay;
// the next sync completes the work.
func (s *Syncer) RecoverRuns(ctx context.Context) {
	for _, e := range s.dirs.List() {
		if lk, ok := s.store.(cache.Locker); ok {
			// A shared store: a "running" run may be another replica's,
			// alive; it is interrupted only if nobody holds the lock.
			lock, held, err := lk.TryLockDirectory(ctx, e.Config.ID)
			if err != nil || !held {
				continue
			}
			s.closeInterrupted(ctx, e.Config.ID, false)
			lock.Release()
			continue
		}
		s.closeInterrupted(ctx, e.Config.ID, true)
	}
}
