package syncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/directory"
	"github.com/ldapgate/ldapgate/metrics"
)

// Triggers recorded in Run.Trigger.
const (
	TriggerSchedule = "schedule"
	TriggerAPI      = "api"
	TriggerStart    = "start"
	TriggerLogin    = "login"
	TriggerMigrate  = "migrate"
	TriggerRemove   = "directory_removed"
)

// Sentinel errors callers branch on (errors.Is).
var (
	// ErrUnknownDirectory: no directory with that id in the set.
	ErrUnknownDirectory = errors.New("unknown directory")
	// ErrRefused: the safety checks refused the plan (empty read, too many
	// blocks); wraps ErrEmptyRead or ErrTooManyBlocks. Force overrides.
	ErrRefused = errors.New("sync refused")
	// ErrSkipped: SyncOne's rules skip the user (wrapped with the reason).
	ErrSkipped = errors.New("user not admitted by the sync rules")
)

// ConflictError is Migrate's refusal: these new names are held by other
// users, so nothing was renamed (SPEC §3: the API answers 409 with them).
type ConflictError struct {
	Names []string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("migration cancelled: %d new name(s) already taken: %v", len(e.Names), e.Names)
}

// Syncer runs the syncs of every directory of a directory.Set into the
// store. All methods are safe for concurrent use.
type Syncer struct {
	store cache.Backend
	dirs  *directory.Set
	// roles: the platform roles, highest first; replaced on reload.
	roles atomic.Pointer[[]string]
	log   *slog.Logger
	m     *metrics.Metrics
	batch int

	mu      sync.Mutex
	running map[uint64]*flight // real (non-dry) syncs in progress, by directory
	live    map[uint64]bool    // ids of the runs this process is running

	// Live-change streams (live.go): liveCtx is Run's while it runs.
	liveMu      sync.Mutex
	liveRefresh sync.Mutex // serialises refreshLive
	liveCtx     context.Context
	streams     map[uint64]*stream

	sched struct {
		sync.Mutex
		cron    *cron.Cron
		ctx     context.Context
		entries []cron.EntryID
	}
}

// flight is one sync in progress that later requests join.
type flight struct {
	done chan struct{}
	run  cache.Run
	err  error
	// exclusive: a migration or directory removal holds the directory; a
	// sync waits for it and then runs, rather than joining.
	exclusive bool
	// release gives back an exclusive hold's cross-replica lock.
	release func()
}

// New returns a Syncer. roles are the platform roles, highest first. log
// and m may be nil.
func New(store cache.Backend, dirs *directory.Set, roles []string, log *slog.Logger, m *metrics.Metrics) *Syncer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Syncer{store: store, dirs: dirs, log: log.With("component", "syncer"), m: m,
		batch: defaultBatch, running: map[uint64]*flight{}, live: map[uint64]bool{}}
	if b, ok := store.(cache.SyncBatcher); ok && b.SyncBatch() > 0 {
		s.batch = b.SyncBatch()
	}
	s.SetRoles(roles)
	return s
}

// SetRoles replaces the platform roles (a config reload); syncs that
// start after it rank roles by the new list.
func (s *Syncer) SetRoles(roles []string) {
	if len(roles) == 0 {
		roles = config.DefaultRoles()
	}
	r := slices.Clone(roles)
	s.roles.Store(&r)
}

func (s *Syncer) currentRoles() []string { return *s.roles.Load() }

// Options of one sync.
type Options struct {
	// DryRun plans without applying; the run is recorded as dry_run with
	// the planned counts (and, in Error, the refusal a real run would meet)
	// and the planned changes as its audit list, each marked Planned.
	DryRun bool
	// Force applies a plan the safety checks refuse (empty read, too many
	// blocks). It never applies a failed read.
	Force bool
	// Trigger is recorded in the run (schedule, api, start).
	Trigger string
	// firing is how close before a scheduled sync's start another
	// replica's scheduled run counts as the same firing (shared.go); set
	// by the scheduler from the schedule's period.
	firing time.Duration
}

// Sync reads directory dirID, plans and (unless DryRun) applies. The
// returned Run is the recorded one, also when err is set: a failed read
// (err wraps the directory error: directory.ErrUnavailable,
// directory.ErrIncompleteRead) and a refusal (ErrRefused) are recorded runs
// with zero changes.
//
// One real sync per directory at a time: a request while one runs waits
// for it and returns its result, whatever its own Force (SPEC §4: "a
// request for a running one joins it"). A dry run never joins a real run
// nor is joined by one: it writes nothing but its run record and must show
// the plan, not another request's outcome. The sync runs under the ctx of
// the request that started it; joiners stop waiting when their own ctx
// ends, without cancelling it.
// testHookJoin, when set (tests only), is called when a Sync call starts
// waiting for the running sync of dirID.
var testHookJoin func(dirID uint64)

func (s *Syncer) Sync(ctx context.Context, dirID uint64, opt Options) (cache.Run, error) {
	if opt.DryRun {
		return s.sync(ctx, dirID, opt)
	}
	s.mu.Lock()
	for {
		f, ok := s.running[dirID]
		if !ok {
			break
		}
		s.mu.Unlock()
		if testHookJoin != nil {
			testHookJoin(dirID)
		}
		select {
		case <-f.done:
			if !f.exclusive {
				return f.run, f.err
			}
		case <-ctx.Done():
			return cache.Run{}, fmt.Errorf("waiting for the running sync of directory %d: %w", dirID, ctx.Err())
		}
		s.mu.Lock()
	}
	f := &flight{done: make(chan struct{})}
	s.running[dirID] = f
	s.mu.Unlock()

	defer func() {
		s.mu.Lock()
		delete(s.running, dirID)
		s.mu.Unlock()
		close(f.done)
	}()
	f.run, f.err = s.syncShared(ctx, dirID, opt)
	return f.run, f.err
}

// effective returns the directory's entry and settings with the store's
// naming override (a migrated config-file directory) applied.
func (s *Syncer) effective(ctx context.Context, dirID uint64) (*directory.Entry, config.Directory, error) {
	e, ok := s.dirs.ByID(dirID)
	if !ok {
		return nil, config.Directory{}, fmt.Errorf("directory %d: %w", dirID, ErrUnknownDirectory)
	}
	cfg := e.Config
	n, err := s.store.NamingOverride(ctx, dirID)
	if err != nil {
		return nil, config.Directory{}, fmt.Errorf("directory %d: %w", dirID, err)
	}
	if n != "" {
		cfg.Naming = n
	}
	return e, cfg, nil
}

// read reads the groups, then streams the users into a planner: the first
// pass over each user runs as its page arrives, while the server works on
// the next one. Any error ends the read and drops the planner: only a
// complete read is planned (SPEC §4 safety).
func (s *Syncer) read(ctx context.Context, c directory.Client, cfg config.Directory) (*planner, error) {
	var groups []directory.Group
	if err := c.ReadGroups(ctx, func(g directory.Group) error {
		groups = append(groups, g)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read groups: %w", err)
	}
	p := newPlanner(cfg, s.currentRoles(), groups)
	if err := c.ReadUsers(ctx, func(u directory.User) error {
		p.add(u)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read users: %w", err)
	}
	return p, nil
}

// phases times the parts of a run for the log.
type phases struct{ read, plan, apply time.Duration }

// preloadLimit: when the store holds at most this many users outside the
// directory being synced, their names are loaded once instead of looked up
// per directory entry (a first sync of 100k users would otherwise make 100k
// store reads to learn that no name is taken).
const preloadLimit = 50_000

// plan reads the directory and plans against the store. The token says
// what of the store's names the plan saw (apply may trust it).
func (s *Syncer) plan(ctx context.Context, e *directory.Entry, cfg config.Directory, omitUnchanged bool,
	ph *phases) (Plan, cache.NamesToken, error) {
	t0 := time.Now()
	// The store's side is loaded while the directory is read: on a
	// re-sync of a big directory the two take about as long. Changes made
	// to the store meanwhile are met by apply, which re-reads every user
	// it writes.
	type storeSide struct {
		names   cache.NamesToken
		current []account.User
		byName  func(string) (account.User, bool, error)
		err     error
	}
	loaded := make(chan storeSide, 1)
	lctx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	go func() {
		var st storeSide
		// The token first: it must predate everything the plan reads.
		if st.names, st.err = s.store.NamesToken(lctx); st.err == nil {
			if st.current, st.err = s.store.UsersOfDirectory(lctx, cfg.ID); st.err == nil {
				st.byName, st.err = s.nameLookup(lctx, cfg.ID)
			}
		}
		loaded <- st
	}()
	pl, err := s.read(ctx, e.Client, cfg)
	ph.read = time.Since(t0)
	if err != nil {
		// A failed read plans nothing: stop loading the store's side.
		stopLoad()
		<-loaded
		return Plan{}, cache.NamesToken{}, err
	}
	st := <-loaded
	defer func() { ph.plan = time.Since(t0) - ph.read }()
	if st.err != nil {
		return Plan{}, cache.NamesToken{}, st.err
	}
	current, byName := st.current, st.byName
	var lookupErr error
	p := pl.finish(PlanInput{Current: current,
		ByName: func(name string) (account.User, bool) {
			u, ok, err := byName(name)
			if err != nil && lookupErr == nil {
				lookupErr = err
			}
			return u, ok
		}, Now: time.Now().UTC(), OmitUnchanged: omitUnchanged})
	if lookupErr != nil {
		return Plan{}, cache.NamesToken{}, fmt.Errorf("store: %w", lookupErr)
	}
	return p, st.names, nil
}

// nameLookup returns the planner's ByName: the users outside directory
// dirID preloaded into a map when they are few, else store reads.
func (s *Syncer) nameLookup(ctx context.Context, dirID uint64) (func(string) (account.User, bool, error), error) {
	counts, err := s.store.CountUsers(ctx)
	if err != nil {
		return nil, err
	}
	outside := 0
	for id, states := range counts {
		if id == dirID {
			continue
		}
		for _, n := range states {
			outside += n
		}
	}
	if outside > preloadLimit {
		return func(name string) (account.User, bool, error) {
			u, err := s.store.UserByName(ctx, name)
			switch {
			case err == nil:
				return u, true, nil
			case errors.Is(err, cache.ErrNotFound):
				return account.User{}, false, nil
			}
			return account.User{}, false, err
		}, nil
	}
	others := make(map[string]account.User, outside)
	for id := range counts {
		if id == dirID {
			continue
		}
		us, err := s.store.UsersOfDirectory(ctx, id)
		if err != nil {
			return nil, err
		}
		for _, u := range us {
			others[u.Username] = u
		}
	}
	// Users of this directory are in the planner's own index; a name
	// missing from both is free.
	return func(name string) (account.User, bool, error) {
		u, ok := others[name]
		return u, ok, nil
	}, nil
}

func (s *Syncer) sync(ctx context.Context, dirID uint64, opt Options) (cache.Run, error) {
	start := time.Now()
	e, cfg, err := s.effective(ctx, dirID)
	if err != nil {
		return cache.Run{}, err
	}
	log := s.log.With("directory", cfg.Name, "directory_id", dirID)
	run, err := s.store.CreateRun(ctx, cache.Run{DirectoryID: dirID, Directory: cfg.Name, Trigger: opt.Trigger,
		DryRun: opt.DryRun, Forced: opt.Force, StartedAt: start.UTC(), Counts: map[string]int{}})
	if err != nil {
		return cache.Run{}, fmt.Errorf("sync of %s: %w", cfg.Name, err)
	}
	s.setLive(run.ID, true)
	defer s.setLive(run.ID, false)
	var ph phases

	finish := func(result string, runErr error) (cache.Run, error) {
		run.Result = result
		if runErr != nil {
			run.Error = runErr.Error()
		}
		run.FinishedAt = time.Now().UTC()
		// The record must be written even when ctx ended the run.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := s.store.FinishRun(fctx, run); err != nil {
			log.Error("sync: recording the run failed", "run", run.ID, "err", err)
		}
		s.observe(fctx, cfg.Name, run, start, ph)
		if result == cache.RunSuccess {
			s.liveSynced(dirID, start)
		}
		attrs := []any{"run", run.ID, "result", result, "trigger", opt.Trigger, "forced", opt.Force,
			"directory_users", run.DirectoryUsers, "counts", run.Counts, "duration", time.Since(start),
			"read", ph.read, "plan", ph.plan, "apply", ph.apply}
		switch result {
		case cache.RunFailed:
			log.Error("sync failed", append(attrs, "err", runErr)...)
		case cache.RunRefused:
			log.Warn("sync refused", append(attrs, "err", runErr)...)
		default:
			log.Info("sync finished", attrs...)
		}
		return run, runErr
	}

	p, names, err := s.plan(ctx, e, cfg, true, &ph)
	if err != nil {
		return finish(cache.RunFailed, fmt.Errorf("sync of %s: %w", cfg.Name, err))
	}
	run.DirectoryUsers = p.DirectoryUsers
	for a, n := range p.Summary() {
		run.Counts[a] = n
	}
	checkErr := p.Check(cfg.BlockFraction(), opt.Force)
	if opt.DryRun {
		if checkErr != nil {
			run.Error = "a real run would be refused: " + checkErr.Error()
		}
		if err := s.recordPlan(ctx, run.ID, p.Changes); err != nil {
			return finish(cache.RunFailed, fmt.Errorf("dry run of %s: %w", cfg.Name, err))
		}
		return finish(cache.RunDryRun, nil)
	}
	if checkErr != nil {
		return finish(cache.RunRefused, fmt.Errorf("sync of %s: %w: %w", cfg.Name, ErrRefused, checkErr))
	}

	t0 := time.Now()
	res, err := s.apply(ctx, run.ID, dirID, p.Changes, &names)
	ph.apply = time.Since(t0)
	// Counts say what was written: planned writes the store overtook become
	// skips.
	for _, a := range []Action{ActionCreate, ActionConvertLocal, ActionAdopt, ActionUpdate, ActionBlock, ActionUnblock} {
		delete(run.Counts, string(a))
		if n := res.counts[a]; n > 0 {
			run.Counts[string(a)] = n
		}
	}
	if res.skipped > 0 {
		run.Counts[string(ActionSkip)] += res.skipped
	}
	if s.m != nil {
		for a, n := range res.counts {
			s.m.SyncChanges.WithLabelValues(cfg.Name, string(a)).Add(float64(n))
		}
	}
	if err != nil {
		return finish(cache.RunFailed, fmt.Errorf("sync of %s: %w", cfg.Name, err))
	}
	return finish(cache.RunSuccess, nil)
}

// observe updates the sync metrics after a run, and the users gauge after
// runs that may have written.
func (s *Syncer) observe(ctx context.Context, dirName string, run cache.Run, start time.Time, ph phases) {
	if s.m == nil {
		return
	}
	s.m.SyncRuns.WithLabelValues(dirName, run.Result).Inc()
	s.m.SyncDuration.WithLabelValues(dirName).Observe(time.Since(start).Seconds())
	// Only the phases the run reached: a read that failed has no plan.
	for _, p := range []struct {
		name string
		d    time.Duration
	}{{"read", ph.read}, {"plan", ph.plan}, {"apply", ph.apply}} {
		if p.d > 0 {
			s.m.SyncPhaseDuration.WithLabelValues(dirName, p.name).Observe(p.d.Seconds())
		}
	}
	if run.Result == cache.RunSuccess {
		s.m.SyncLastSuccess.WithLabelValues(dirName).Set(float64(run.FinishedAt.Unix()))
	}
	if run.Result == cache.RunSuccess || run.Result == cache.RunFailed {
		s.RefreshUserMetrics(ctx)
	}
}

// RefreshUserMetrics sets ldapgate_users{directory,state} from the store.
// Directory labels are names ("local" for local users); users of a removed
// directory are counted under "removed".
func (s *Syncer) RefreshUserMetrics(ctx context.Context) {
	if s.m == nil {
		return
	}
	counts, err := s.store.CountUsers(ctx)
	if err != nil {
		s.log.Warn("counting users for metrics failed", "err", err)
		return
	}
	agg := map[[2]string]int{}
	for id, states := range counts {
		name := "local"
		if id != 0 {
			name = "removed"
			if e, ok := s.dirs.ByID(id); ok {
				name = e.Config.Name
			}
		}
		for st, n := range states {
			agg[[2]string{name, string(st)}] += n
		}
	}
	s.m.Users.Reset()
	for k, n := range agg {
		s.m.Users.WithLabelValues(k[0], k[1]).Set(float64(n))
	}
}

// PreviewRow is one line of GET /auth/v4/ldap/{id}/preview.
type PreviewRow struct {
	Username string `json:"username"`
	Email    string `json:"email"`
	Role     string `json:"role"`
	// Exists: the user is on the platform (in the store) already.
	Exists bool   `json:"exists"`
	Action string `json:"action"`
	// Reason of a skip or block.
	Reason string `json:"reason,omitempty"`
}

// Preview reads the directory and returns the plan as rows, without
// recording a run: the same plan a dry run or a sync would make.
func (s *Syncer) Preview(ctx context.Context, dirID uint64) ([]PreviewRow, error) {
	e, cfg, err := s.effective(ctx, dirID)
	if err != nil {
		return nil, err
	}
	p, _, err := s.plan(ctx, e, cfg, false, &phases{})
	if err != nil {
		return nil, fmt.Errorf("preview of %s: %w", cfg.Name, err)
	}
	rows := make([]PreviewRow, 0, len(p.Changes))
	for i := range p.Changes {
		c := &p.Changes[i]
		rows = append(rows, PreviewRow{Username: c.Username, Email: c.After.Email, Role: c.After.Role,
			Exists: c.Before != nil, Action: string(c.Action), Reason: c.Reason})
	}
	return rows, nil
}

// SyncOne syncs one directory entry on the spot (SPEC §5: a user who binds
// but is not in the store yet): the same rules, with the directory's groups
// read now, for that entry only; nobody else is blocked or touched. It
// returns the user as stored, or an error wrapping ErrSkipped with the
// reason when the rules do not admit them. A user who exists but is not
// active is returned as is: the caller refuses them.
func (s *Syncer) SyncOne(ctx context.Context, dirID uint64, u directory.User) (account.User, error) {
	e, cfg, err := s.effective(ctx, dirID)
	if err != nil {
		return account.User{}, err
	}
	var groups []directory.Group
	if err := e.Client.ReadGroups(ctx, func(g directory.Group) error {
		groups = append(groups, g)
		return nil
	}); err != nil {
		return account.User{}, fmt.Errorf("sync of %s on login: read groups: %w", cfg.Name, err)
	}
	c, err := s.planEntry(ctx, cfg, u, groups)
	if err != nil {
		return account.User{}, fmt.Errorf("sync of %s on login: %w", cfg.Name, err)
	}
	switch {
	case c.Action == ActionSkip:
		return account.User{}, fmt.Errorf("%w: %s", ErrSkipped, c.Reason)
	case c.Action == ActionUnchanged:
		return *c.Before, nil
	}
	res, err := s.applyEntry(ctx, cfg, c, TriggerLogin)
	if err != nil {
		return account.User{}, fmt.Errorf("sync of %s on login: %w", cfg.Name, err)
	}
	if res.skipped > 0 {
		// The store changed between the plan and the write (a concurrent
		// sync created them, or the name was taken): read what is there.
		if x, err := s.store.UserByUUID(ctx, dirID, u.UUID); err == nil {
			return x, nil
		}
		return account.User{}, fmt.Errorf("%w: %s", ErrSkipped, SkipNameTaken)
	}
	out, err := s.store.UserByName(ctx, c.Username)
	if err != nil {
		return account.User{}, fmt.Errorf("sync of %s on login: %w", cfg.Name, err)
	}
	return out, nil
}

// planEntry plans one directory entry against the store, with the groups
// given: the same rules as a full sync, for that entry only (Partial:
// nobody else is blocked or touched).
func (s *Syncer) planEntry(ctx context.Context, cfg config.Directory, u directory.User, groups []directory.Group) (Change, error) {
	var current []account.User
	if u.UUID != "" {
		cur, err := s.store.UserByUUID(ctx, cfg.ID, u.UUID)
		switch {
		case err == nil:
			current = append(current, cur)
		case !errors.Is(err, cache.ErrNotFound):
			return Change{}, err
		}
	}
	var lookupErr error
	p := BuildPlan(PlanInput{Dir: cfg, Roles: s.currentRoles(), Snapshot: Snapshot{Users: []directory.User{u}, Groups: groups},
		Current: current, Now: time.Now().UTC(), Partial: true,
		ByName: func(name string) (account.User, bool) {
			x, err := s.store.UserByName(ctx, name)
			if err != nil && !errors.Is(err, cache.ErrNotFound) {
				lookupErr = err
			}
			return x, err == nil
		}})
	if lookupErr != nil {
		return Change{}, lookupErr
	}
	if len(p.Changes) != 1 {
		return Change{}, fmt.Errorf("plan has %d changes for one entry", len(p.Changes))
	}
	return p.Changes[0], nil
}

// applyEntry writes one planned change as a run of its own (trigger
// login or live), so the audit says who changed the user and why.
func (s *Syncer) applyEntry(ctx context.Context, cfg config.Directory, c Change, trigger string) (applied, error) {
	return s.applyEntries(ctx, cfg, []Change{c}, trigger)
}

// applyEntries writes changes planned one entry at a time as one run.
func (s *Syncer) applyEntries(ctx context.Context, cfg config.Directory, changes []Change, trigger string) (applied, error) {
	run, err := s.store.CreateRun(ctx, cache.Run{DirectoryID: cfg.ID, Directory: cfg.Name, Trigger: trigger,
		StartedAt: time.Now().UTC(), DirectoryUsers: len(changes), Counts: map[string]int{}})
	if err != nil {
		return applied{}, err
	}
	res, err := s.apply(ctx, run.ID, cfg.ID, changes, nil)
	for a, n := range res.counts {
		run.Counts[string(a)] = n
	}
	if res.skipped > 0 {
		run.Counts[string(ActionSkip)] += res.skipped
	}
	run.Result, run.FinishedAt = cache.RunSuccess, time.Now().UTC()
	if err != nil {
		run.Result, run.Error = cache.RunFailed, err.Error()
	}
	if ferr := s.store.FinishRun(context.WithoutCancel(ctx), run); ferr != nil {
		s.log.Error("recording a one-entry sync failed", "run", run.ID, "trigger", trigger, "err", ferr)
	}
	if err != nil {
		return res, err
	}
	if s.m != nil {
		for a, n := range res.counts {
			s.m.SyncChanges.WithLabelValues(cfg.Name, string(a)).Add(float64(n))
		}
	}
	return res, nil
}

func (s *Syncer) setLive(runID uint64, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		s.live[runID] = true
	} else {
		delete(s.live, runID)
	}
}
