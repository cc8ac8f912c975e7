package syncer

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/cache/badgerstore"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/directory"
)

// TestScheduler: Run syncs on the directory's schedule, closes runs a crash
// left "running", picks up schedule changes on Reschedule, and returns only
// once its jobs have stopped.
func TestScheduler(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx

	// A run a killed process left behind.
	stale, err := e.store.CreateRun(ctx, cache.Run{DirectoryID: testDirID, Directory: e.dir.Name, Trigger: "api"})
	if err != nil {
		t.Fatal(err)
	}

	// auto_sync off: nothing is scheduled.
	off := false
	e.dir.Schedule, e.dir.AutoSync = "@every 1s", &off
	e.setClient(nil)

	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.s.Run(runCtx) }()

	waitFor(t, 5*time.Second, "stale run closed", func() bool {
		r, _ := e.store.Run(ctx, stale.ID)
		return r.Result == cache.RunFailed
	})
	time.Sleep(1500 * time.Millisecond)
	if n := len(scheduledRuns(t, e)); n != 0 {
		t.Fatalf("%d scheduled runs with auto_sync off", n)
	}
	if len(e.s.NextRuns()) != 0 {
		t.Errorf("next runs with auto_sync off: %v", e.s.NextRuns())
	}

	on := true
	e.dir.AutoSync = &on
	e.setClient(nil)
	e.s.Reschedule()
	if next := e.s.NextRuns()[testDirID]; next.IsZero() || next.After(time.Now().Add(2*time.Second)) {
		t.Errorf("next run %v", next)
	}
	// Wait for a scheduled run to finish, not merely start: the users are
	// only there once it has applied.
	waitFor(t, 10*time.Second, "a finished scheduled sync", func() bool {
		for _, r := range scheduledRuns(t, e) {
			if r.Result != cache.RunRunning {
				return true
			}
		}
		return false
	})
	for _, r := range scheduledRuns(t, e) {
		if r.Result != cache.RunSuccess && r.Result != cache.RunRunning {
			t.Errorf("scheduled run %+v", r)
		}
	}
	if _, err := e.store.UserByName(ctx, e.fx.Login("alice")); err != nil {
		t.Errorf("scheduled sync did not create users: %v", err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	// Stopped: no more runs appear, none is left running.
	n := len(scheduledRuns(t, e))
	time.Sleep(1500 * time.Millisecond)
	runs := scheduledRuns(t, e)
	if len(runs) != n {
		t.Errorf("runs after stop: %d → %d", n, len(runs))
	}
	for _, r := range runs {
		if r.Result == cache.RunRunning {
			t.Errorf("run %d left running after stop", r.ID)
		}
	}
	e.s.Reschedule() // a no-op once stopped; must not panic
}

func scheduledRuns(t *testing.T, e *env) []cache.Run {
	t.Helper()
	all, err := e.store.Runs(e.ctx, testDirID, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []cache.Run
	for _, r := range all {
		if r.Trigger == TriggerSchedule {
			out = append(out, r)
		}
	}
	return out
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestScheduleLogNext: the start-up log names the schedule's real next
// time. cron fills in an entry's Next only once it runs, and the first
// schedule is made before it starts: the log said 0001-01-01.
func TestScheduleLogNext(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	store, err := badgerstore.Open(t.TempDir(), testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	dir := config.Directory{ID: testDirID, Name: "corp", Type: "ldap", BaseDN: "dc=example,dc=com", Schedule: "hourly"}
	dir.ApplyDefaults()
	dirs := directory.NewSet()
	dirs.Replace([]*directory.Entry{{Config: dir}})
	s := New(store.Backend(), dirs, config.DefaultRoles(), log, nil)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()

	var line struct{ Next time.Time }
	waitFor(t, 10*time.Second, "the sync scheduled log line", func() bool {
		for _, l := range bytes.Split(buf.Bytes(), []byte("\n")) {
			if bytes.Contains(l, []byte(`"msg":"sync scheduled"`)) {
				if err := json.Unmarshal(l, &line); err != nil {
					t.Fatalf("log line %s: %v", l, err)
				}
				return true
			}
		}
		return false
	})
	if now := time.Now(); !line.Next.After(now.Add(-time.Minute)) || line.Next.After(now.Add(61*time.Minute)) {
		t.Errorf("logged next = %v, want the next full hour after %v", line.Next, now)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger writing while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}
