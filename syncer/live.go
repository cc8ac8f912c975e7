package syncer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/directory"
)

// TriggerLive marks the runs of live directory changes (SPEC §13).
const TriggerLive = "live"

// Live states of GET /auth/v4/ldap/{id} besides directory.LiveStreaming
// and directory.LivePolling.
const (
	// LiveOff: live is off for the directory, or its stream is down
	// (scheduled syncs carry on alone meanwhile).
	LiveOff = "off"
	// LivePaused: live blocks spent the rolling hour's budget; the next
	// successful full sync resumes the stream.
	LivePaused = "paused"
)

// ErrLivePaused: a live change would block more than max_block_fraction of
// the directory's active users within the rolling hour.
var ErrLivePaused = errors.New("live changes paused: blocks in the last hour reached max_block_fraction")

// liveMaxBackoff caps the wait between reconnection attempts.
const liveMaxBackoff = time.Minute

// LiveStatus is a directory's live-change state as the API shows it.
type LiveStatus struct {
	State       string    `json:"state"`
	LastEventAt time.Time `json:"last_event_at"`
}

// stream is one directory's live-change follower: one goroutine, owned by
// the Syncer (started by Run, restarted by Reschedule, stopped with Run's
// ctx).
type stream struct {
	dirID    uint64
	client   directory.Client
	interval time.Duration
	cancel   context.CancelFunc
	done     chan struct{}
	// synced receives (without blocking) the start of each real sync of
	// the directory that succeeded: a paused stream waits for one that
	// started after it paused.
	synced chan time.Time

	mu        sync.Mutex
	state     string
	connects  int // connections made, for tests and the log
	lastEvent time.Time
	blocks    []time.Time // live blocks of active users in the last hour

	// Stream goroutine only: the groups as the stream last read them, and
	// whether its cookie was refused (the next full content needs a sync).
	groups []directory.Group
	lost   bool
}

func (st *stream) status() LiveStatus {
	st.mu.Lock()
	defer st.mu.Unlock()
	return LiveStatus{State: st.state, LastEventAt: st.lastEvent}
}

func (st *stream) setState(s string) {
	st.mu.Lock()
	st.state = s
	st.mu.Unlock()
}

// LiveStatus returns the live state of a directory: off when live is off
// for it or its server cannot follow changes.
func (s *Syncer) LiveStatus(dirID uint64) LiveStatus {
	if s == nil {
		return LiveStatus{State: LiveOff}
	}
	s.liveMu.Lock()
	st := s.streams[dirID]
	s.liveMu.Unlock()
	if st == nil {
		return LiveStatus{State: LiveOff}
	}
	return st.status()
}

// startLive starts the streams of the current directory set under ctx.
func (s *Syncer) startLive(ctx context.Context) {
	s.liveMu.Lock()
	s.liveCtx = ctx
	s.liveMu.Unlock()
	s.refreshLive()
}

// stopLive stops every stream and waits for them.
func (s *Syncer) stopLive() {
	s.liveMu.Lock()
	s.liveCtx = nil
	streams := s.streams
	s.streams = nil
	s.liveMu.Unlock()
	for _, st := range streams {
		st.cancel()
	}
	for _, st := range streams {
		<-st.done
	}
}

// refreshLive makes the streams match the directory set: a directory whose
// client or live settings changed gets a new stream, a removed one loses
// its own. A no-op when Run is not running.
func (s *Syncer) refreshLive() {
	// One refresh at a time; it waits for the streams it stops before it
	// starts their replacements (one stream per directory, ever), without
	// liveMu: a stopping stream may be in a sync whose end takes it.
	s.liveRefresh.Lock()
	defer s.liveRefresh.Unlock()
	s.liveMu.Lock()
	if s.liveCtx == nil {
		s.liveMu.Unlock()
		return
	}
	want := map[uint64]*directory.Entry{}
	for _, e := range s.dirs.List() {
		if _, ok := e.Client.(directory.Follower); ok && e.Config.LiveEnabled() {
			want[e.Config.ID] = e
		}
	}
	var stopped []*stream
	for id, st := range s.streams {
		e, ok := want[id]
		if ok && e.Client == st.client && time.Duration(e.Config.LiveInterval) == st.interval {
			delete(want, id)
			continue
		}
		st.cancel()
		stopped = append(stopped, st)
		delete(s.streams, id)
	}
	s.liveMu.Unlock()
	for _, st := range stopped {
		<-st.done
	}

	s.liveMu.Lock()
	defer s.liveMu.Unlock()
	if s.liveCtx == nil {
		return // stopLive ran meanwhile
	}
	if s.streams == nil {
		s.streams = map[uint64]*stream{}
	}
	for id, e := range want {
		ctx, cancel := context.WithCancel(s.liveCtx)
		st := &stream{dirID: id, client: e.Client, interval: time.Duration(e.Config.LiveInterval),
			cancel: cancel, done: make(chan struct{}), synced: make(chan time.Time, 1), state: LiveOff}
		s.streams[id] = st
		go s.runStream(ctx, st)
	}
}

// liveSynced tells a directory's stream that a real sync of it, started
// at started, succeeded. Only the latest matters: an older one waiting in
// the channel is replaced.
func (s *Syncer) liveSynced(dirID uint64, started time.Time) {
	s.liveMu.Lock()
	st := s.streams[dirID]
	s.liveMu.Unlock()
	if st == nil {
		return
	}
	for {
		select {
		case st.synced <- started:
			return
		default:
		}
		select {
		case <-st.synced:
		default:
		}
	}
}

func (s *Syncer) setConnected(name string, on bool) {
	if s.m == nil {
		return
	}
	v := 0.0
	if on {
		v = 1
	}
	s.m.LiveConnected.WithLabelValues(name).Set(v)
}

func (s *Syncer) countLive(name, action string) {
	if s.m != nil {
		s.m.LiveEvents.WithLabelValues(name, action).Inc()
	}
}

// runStream follows one directory until ctx ends: connect, resume from the
// stored cookie, apply each change, reconnect with exponential back-off
// when the stream breaks, and wait for a full sync when paused.
func (s *Syncer) runStream(ctx context.Context, st *stream) {
	defer close(st.done)
	for {
		lock, ok := s.holdStream(ctx, st)
		if !ok {
			st.setState(LiveOff)
			return
		}
		lctx, stop := underLock(ctx, lock)
		s.followHeld(lctx, st)
		lost := errors.Is(context.Cause(lctx), ErrLockLost)
		stop()
		lock.Release()
		if !lost || ctx.Err() != nil {
			return
		}
		// Another replica may follow the directory now: stand by again.
		s.log.Warn("live stream: the cross-replica lock was lost with its connection; standing by", "directory_id", st.dirID)
	}
}

// followHeld is runStream's work while this replica holds the stream.
func (s *Syncer) followHeld(ctx context.Context, st *stream) {
	f := st.client.(directory.Follower)
	backoff := max(st.interval, time.Second)
	var name string
	for ctx.Err() == nil {
		_, cfg, err := s.effective(ctx, st.dirID)
		if errors.Is(err, ErrUnknownDirectory) {
			return // removed; refreshLive stops us too
		}
		log := s.log.With("directory_id", st.dirID)
		if err == nil {
			name = cfg.Name
			log = log.With("directory", cfg.Name)
			err = s.follow(ctx, st, f, cfg, func() { backoff = max(st.interval, time.Second) })
		}
		if name != "" {
			s.setConnected(name, false)
		}
		if ctx.Err() != nil {
			break
		}
		wait := backoff
		switch {
		case errors.Is(err, ErrLivePaused):
			st.setState(LivePaused)
			s.countLive(name, "paused")
			log.Warn("live changes paused until the next successful full sync", "err", err)
			pausedAt := time.Now()
		wait:
			for {
				select {
				case <-ctx.Done():
					break wait
				case started := <-st.synced:
					if started.After(pausedAt) {
						// The full sync decided about everything the
						// budget counted.
						st.mu.Lock()
						st.blocks = nil
						st.mu.Unlock()
						log.Info("live changes resumed after a full sync")
						break wait
					}
				}
			}
			continue
		case errors.Is(err, directory.ErrPrimeRefused):
			wait = 0
		case errors.Is(err, directory.ErrCookieRefused):
			st.lost = true
			log.Info("live stream: the server cannot resume from the stored cookie; starting over")
			if err := s.store.SetLiveCookie(ctx, st.dirID, nil); err != nil {
				log.Warn("live stream: dropping the cookie failed", "err", err)
			}
			wait = 0
		default:
			st.setState(LiveOff)
			log.Warn("live stream down; scheduled syncs carry on", "err", err, "retry_in", backoff)
			backoff = min(backoff*2, liveMaxBackoff)
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
	}
	st.setState(LiveOff)
	if name != "" && s.m != nil {
		// Stopped (live off, directory removed or changed, shutdown): no
		// series left behind for the stream-down alert to fire on.
		s.m.LiveConnected.DeleteLabelValues(name)
	}
}

// follow runs one connection of a stream.
func (s *Syncer) follow(ctx context.Context, st *stream, f directory.Follower, cfg config.Directory, connected func()) error {
	cookie, err := s.store.LiveCookie(ctx, st.dirID)
	if err != nil {
		return err
	}
	if err := s.readStreamGroups(ctx, st); err != nil {
		return err
	}
	return f.Follow(ctx, cookie, st.interval, directory.LiveHandler{
		Connected: func(mode string) {
			st.mu.Lock()
			st.state = mode
			st.connects++
			st.mu.Unlock()
			s.setConnected(cfg.Name, true)
			connected()
			s.log.Info("live stream connected", "directory", cfg.Name, "mode", mode, "resumed", len(cookie) > 0)
		},
		Batch: func(ctx context.Context, b directory.LiveBatch) error {
			if b.Resync && len(cookie) > 0 {
				st.lost = true // the whole content, in answer to our cookie
			}
			return s.liveBatch(ctx, st, f, b)
		},
	})
}

func (s *Syncer) readStreamGroups(ctx context.Context, st *stream) error {
	var groups []directory.Group
	if err := st.client.ReadGroups(ctx, func(g directory.Group) error {
		groups = append(groups, g)
		return nil
	}); err != nil {
		return fmt.Errorf("read groups: %w", err)
	}
	st.groups = groups
	return nil
}

// liveBatch applies one batch of changes, then keeps its cookie. An error
// leaves the cookie where it was: the stream reconnects and the server
// sends the changes again.
func (s *Syncer) liveBatch(ctx context.Context, st *stream, f directory.Follower, b directory.LiveBatch) error {
	_, cfg, err := s.effective(ctx, st.dirID)
	if err != nil {
		return err
	}
	if b.Resync && st.lost {
		// The stream had a cookie the server no longer knows (it lost
		// its change state, or forgot ours): the changes since are not
		// known, so a full sync, with its own safety checks, catches up
		// on them. A stream's very first start needs none: until then
		// the schedule alone kept the store, as it still does.
		st.lost = false
		counts, err := s.store.CountUsers(ctx)
		if err != nil {
			return err
		}
		if len(counts[st.dirID]) > 0 {
			s.countLive(cfg.Name, "resync")
			s.log.Info("live stream: changes since the last one unknown; running a full sync", "directory", cfg.Name)
			if _, err := s.Sync(ctx, st.dirID, Options{Trigger: TriggerLive}); err != nil && !errors.Is(err, ErrRefused) {
				return err
			}
			if err := s.readStreamGroups(ctx, st); err != nil {
				return err
			}
		}
	}
	// Deletes that arrive together are judged together: a burst past the
	// budget pauses the stream before any of it is applied, rather than
	// blocking the first few.
	gone := 0
	for _, ev := range b.Events {
		if !ev.Deleted {
			continue
		}
		u, err := s.storedUser(ctx, cfg.ID, f, ev)
		if err != nil {
			return err
		}
		if u != nil && u.State == account.StateActive {
			gone++
		}
	}
	if gone > 1 {
		if err := s.checkBudget(ctx, st, cfg, gone); err != nil {
			return err
		}
	}
	// Changed user entries are planned one by one and written together
	// (one run, one commit); anything else (a delete, a group) first
	// writes what is planned, since it may depend on it.
	var planned []Change
	flush := func() error {
		if len(planned) == 0 {
			return nil
		}
		c := planned
		planned = nil
		return s.liveWrite(ctx, cfg, c)
	}
	lastOf := map[string]int{}
	for i, ev := range b.Events {
		if !ev.Deleted {
			lastOf[directory.NormalizeDN(ev.DN)] = i
		}
	}
	for i, ev := range b.Events {
		if !ev.Deleted {
			if lastOf[directory.NormalizeDN(ev.DN)] != i {
				continue // re-read once, at its last change in the batch
			}
			u, ok, err := f.ReadUserByDN(ctx, ev.DN)
			if err != nil {
				return err
			}
			if ok {
				c, err := s.planEntry(ctx, cfg, u, st.groups)
				if err != nil {
					return err
				}
				if !c.Action.Writes() {
					s.countLive(cfg.Name, string(c.Action))
					continue
				}
				if c.Action == ActionBlock && c.Before != nil && c.Before.State == account.StateActive {
					if err := s.takeBlock(ctx, st, cfg); err != nil {
						if ferr := flush(); ferr != nil {
							return ferr
						}
						return err
					}
				}
				planned = append(planned, c)
				continue
			}
		}
		if err := flush(); err != nil {
			return err
		}
		if err := s.liveEvent(ctx, st, f, cfg, ev); err != nil {
			return err
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if len(b.Events) > 0 {
		st.mu.Lock()
		st.lastEvent = time.Now().UTC()
		st.mu.Unlock()
	}
	if len(b.Cookie) > 0 {
		return s.store.SetLiveCookie(ctx, st.dirID, b.Cookie)
	}
	return nil
}

// liveEvent re-reads what one event names and passes it through the
// one-entry plan.
func (s *Syncer) liveEvent(ctx context.Context, st *stream, f directory.Follower, cfg config.Directory, ev directory.LiveEvent) error {
	if !ev.Deleted {
		u, ok, err := f.ReadUserByDN(ctx, ev.DN)
		if err != nil {
			return err
		}
		if ok {
			return s.liveUser(ctx, st, cfg, u)
		}
	}
	stored, err := s.storedUser(ctx, cfg.ID, f, ev)
	if err != nil {
		return err
	}
	if stored != nil {
		// Gone for the stream; make sure it is gone for a full read too
		// (a rename comes as a delete on some servers).
		if stored.LDAPDN != "" && (ev.DN == "" || directory.NormalizeDN(stored.LDAPDN) != directory.NormalizeDN(ev.DN)) {
			u, ok, err := f.ReadUserByDN(ctx, stored.LDAPDN)
			if err != nil {
				return err
			}
			if ok && u.UUID == stored.LDAPUUID {
				return s.liveUser(ctx, st, cfg, u)
			}
		}
		return s.liveGone(ctx, st, cfg, *stored)
	}
	if ev.DN == "" || f.InGroups(ev.DN) {
		return s.liveGroups(ctx, st, f, cfg)
	}
	s.countLive(cfg.Name, "ignored")
	return nil
}

// storedUser finds the store user an event names: by immutable id, else
// (an id the store keeps in another form, as 389-ds's ipaUniqueID) by DN.
func (s *Syncer) storedUser(ctx context.Context, dirID uint64, f directory.Follower, ev directory.LiveEvent) (*account.User, error) {
	for _, id := range ev.UUIDs {
		u, err := s.store.UserByUUID(ctx, dirID, id)
		if err == nil {
			return &u, nil
		}
		if !errors.Is(err, cache.ErrNotFound) {
			return nil, err
		}
	}
	if ev.DN == "" || !f.InUsers(ev.DN) {
		return nil, nil
	}
	users, err := s.store.UsersOfDirectory(ctx, dirID)
	if err != nil {
		return nil, err
	}
	n := directory.NormalizeDN(ev.DN)
	for i := range users {
		if users[i].Source == account.SourceLDAP && directory.NormalizeDN(users[i].LDAPDN) == n {
			return &users[i], nil
		}
	}
	return nil, nil
}

// liveUser plans and applies one user entry.
func (s *Syncer) liveUser(ctx context.Context, st *stream, cfg config.Directory, u directory.User) error {
	c, err := s.planEntry(ctx, cfg, u, st.groups)
	if err != nil {
		return err
	}
	return s.liveApply(ctx, st, cfg, c)
}

// liveGone blocks a store user whose entry is gone deleted_in_ldap, as a
// full sync would (rule 7), unless an admin block stands or it already is.
func (s *Syncer) liveGone(ctx context.Context, st *stream, cfg config.Directory, u account.User) error {
	if u.Source != account.SourceLDAP || u.DirectoryID != cfg.ID || u.BlockReason == account.ReasonAdmin ||
		(u.State == account.StateBlocked && u.BlockReason == account.ReasonDeletedInLDAP) {
		s.countLive(cfg.Name, string(ActionUnchanged))
		return nil
	}
	return s.liveApply(ctx, st, cfg, block(&u, account.StateBlocked, account.ReasonDeletedInLDAP, time.Now().UTC()))
}

func (s *Syncer) liveApply(ctx context.Context, st *stream, cfg config.Directory, c Change) error {
	if !c.Action.Writes() {
		s.countLive(cfg.Name, string(c.Action))
		return nil
	}
	if c.Action == ActionBlock && c.Before != nil && c.Before.State == account.StateActive {
		if err := s.takeBlock(ctx, st, cfg); err != nil {
			return err
		}
	}
	return s.liveWrite(ctx, cfg, []Change{c})
}

// liveWrite applies planned live changes as one run (trigger live).
func (s *Syncer) liveWrite(ctx context.Context, cfg config.Directory, changes []Change) error {
	res, err := s.applyEntries(ctx, cfg, changes, TriggerLive)
	if err != nil {
		return err
	}
	if s.m != nil {
		for a, n := range res.counts {
			s.m.LiveEvents.WithLabelValues(cfg.Name, string(a)).Add(float64(n))
		}
		if res.skipped > 0 {
			s.m.LiveEvents.WithLabelValues(cfg.Name, string(ActionSkip)).Add(float64(res.skipped))
		}
	}
	return nil
}

// takeBlock counts one live block of an active user against the rolling
// hour's budget: max_block_fraction of the directory's active users, the
// same bound a full sync's plan has.
func (s *Syncer) takeBlock(ctx context.Context, st *stream, cfg config.Directory) error {
	return s.budget(ctx, st, cfg, 1, true)
}

// checkBudget reports whether n more blocks fit the budget, taking none.
func (s *Syncer) checkBudget(ctx context.Context, st *stream, cfg config.Directory, n int) error {
	return s.budget(ctx, st, cfg, n, false)
}

func (s *Syncer) budget(ctx context.Context, st *stream, cfg config.Directory, n int, take bool) error {
	counts, err := s.store.CountUsers(ctx)
	if err != nil {
		return err
	}
	active := counts[cfg.ID][account.StateActive]
	now := time.Now()
	st.mu.Lock()
	defer st.mu.Unlock()
	st.blocks = slices.DeleteFunc(st.blocks, func(t time.Time) bool { return now.Sub(t) >= time.Hour })
	if float64(len(st.blocks)+n) > cfg.BlockFraction()*float64(active) {
		return fmt.Errorf("%w: %d blocks in the last hour, %d active users (max_block_fraction %g)",
			ErrLivePaused, len(st.blocks)+n, active, cfg.BlockFraction())
	}
	if take {
		st.blocks = append(st.blocks, now)
	}
	return nil
}

// liveGroups re-reads the groups after a group entry changed and re-plans
// every user the changed groups reach, before or after the change
// (directly or through nested groups).
func (s *Syncer) liveGroups(ctx context.Context, st *stream, f directory.Follower, cfg config.Directory) error {
	old := st.groups
	if err := s.readStreamGroups(ctx, st); err != nil {
		return err
	}
	dns, uids := affectedMembers(old, st.groups)
	for _, dn := range dns {
		u, ok, err := f.ReadUserByDN(ctx, dn)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if err := s.liveUser(ctx, st, cfg, u); err != nil {
			return err
		}
	}
	for _, uid := range uids {
		u, err := st.client.FindUser(ctx, uid)
		if errors.Is(err, directory.ErrUserNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if err := s.liveUser(ctx, st, cfg, u); err != nil {
			return err
		}
	}
	return nil
}

// affectedMembers returns the member DNs (that are no group) and posix
// memberUids reached from every group that differs between before and
// after, walking nested groups in both.
func affectedMembers(before, after []directory.Group) (dns, uids []string) {
	index := func(gs []directory.Group) map[string]*directory.Group {
		m := make(map[string]*directory.Group, len(gs))
		for i := range gs {
			m[normalizeDN(gs[i].DN)] = &gs[i]
		}
		return m
	}
	b, a := index(before), index(after)
	same := func(x, y *directory.Group) bool {
		return x != nil && y != nil && slices.Equal(x.Members, y.Members) &&
			slices.Equal(x.MemberUIDs, y.MemberUIDs) && slices.Equal(x.MemberOf, y.MemberOf)
	}
	var queue []string
	seen := map[string]bool{}
	for _, m := range []map[string]*directory.Group{b, a} {
		for dn := range m {
			if !seen[dn] && !same(b[dn], a[dn]) {
				seen[dn] = true
				queue = append(queue, dn)
			}
		}
	}
	// A group's memberOf names its parents: a changed child reaches what
	// its members reach; members are walked downwards.
	seenUser := map[string]bool{}
	seenUID := map[string]bool{}
	for len(queue) > 0 {
		g := queue[0]
		queue = queue[1:]
		for _, x := range []*directory.Group{b[g], a[g]} {
			if x == nil {
				continue
			}
			for _, mem := range x.Members {
				n := normalizeDN(mem)
				if _, isGroup := a[n]; isGroup || b[n] != nil {
					if !seen[n] {
						seen[n] = true
						queue = append(queue, n)
					}
					continue
				}
				if !seenUser[n] {
					seenUser[n] = true
					dns = append(dns, mem)
				}
			}
			for _, uid := range x.MemberUIDs {
				if k := account.NormalizeName(uid); !seenUID[k] {
					seenUID[k] = true
					uids = append(uids, uid)
				}
			}
		}
	}
	slices.Sort(dns)
	slices.Sort(uids)
	return dns, uids
}
