package syncer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
)

// defaultBatch is how many changes one store transaction applies. Each
// change writes about four keys (user, name, uuid and listing indexes) and
// its audit entry (chunked, 256 per key) in under 1.5 KiB, so 1000 stay
// well below badger's per-transaction limit (see
// cache/badgerstore/open.go; a batch that still outgrows it is committed
// through the store's big-transaction journal) while a 100k-user first
// sync commits 100 times.
const defaultBatch = 1000

// A measurement switch for bench/e2e-sync.sh (issue 12: do the trusted
// creates earn their place in the end-to-end figure?), set only by a
// build with -ldflags "-X
// github.com/ldapgate/ldapgate/syncer.benchUntrusted=1"; empty in every
// other build.
var benchUntrusted string

// testHookAfterBatch, when set (tests only), is called after each committed
// batch with the number of changes applied so far.
var testHookAfterBatch func(applied int)

// applied is what apply did.
type applied struct {
	counts  map[Action]int // by action, as written
	skipped int            // planned writes dropped because the store changed meanwhile
}

// apply writes the plan's changes in batches (and clears each change once
// its batch is committed: apply consumes them), each batch one store
// transaction holding the changed users and their audit entries: after a
// crash the store holds whole batches only, and audit and data agree.
// Blocking a user deletes their sessions in the same transaction (SPEC §5:
// the next request is refused). A cancelled ctx stops between batches.
//
// Batches commit one after the other. (Overlapping a batch's commit with
// building the next, cache/pipeline.go until issue 12, showed no gain on
// the built binary: BENCHMARKS.md, "Several replicas".)
//
// names, when given, is the store as the plan saw it: while it holds, new
// users are written without PutUser's index lookups
// (cache/badgerstore/names.go), which the plan did already.
func (s *Syncer) apply(ctx context.Context, runID uint64, dirID uint64, changes []Change,
	names *cache.NamesToken) (applied, error) {
	res := applied{counts: map[Action]int{}}
	if benchUntrusted != "" {
		names = nil
	}
	if names != nil {
		end, ok := s.store.TrustNames()
		if !ok {
			names = nil // another sync's turn: write with lookups
		} else {
			defer end() // on return, so the turn covers every commit
		}
	}
	trust := &trustState{token: names}
	var batch []*Change
	done := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		b := batch
		batch = nil
		return s.applyBatch(ctx, runID, dirID, b, trust, &res, func() {
			done += len(b)
			// Applied changes are not looked at again: dropping their
			// records lets the strings they hold go while the rest applies.
			for _, c := range b {
				*c = Change{Action: c.Action, Reason: c.Reason}
			}
			if testHookAfterBatch != nil {
				testHookAfterBatch(done)
			}
		})
	}
	var err error
	for i := range changes {
		if !changes[i].Action.Writes() {
			continue
		}
		if batch == nil {
			batch = make([]*Change, 0, s.batch)
		}
		batch = append(batch, &changes[i])
		if len(batch) == s.batch {
			if err = flush(); err != nil {
				break
			}
		}
	}
	if err == nil {
		err = flush()
	}
	return res, err
}

// applyBatch commits one batch; committed runs once it is committed, after its
// counts are added to res. A batch badger finds too big is committed by the
// store's big-transaction mode (badgerstore.Store.Update).
//
// A change whose name or uuid another user took since the plan (PutUser's
// ErrNameTaken / ErrUUIDTaken) is dropped, logged and counted as a skip,
// and the batch runs again without it (cache.ErrRerun): PutUser may have
// written part of its index keys, so the transaction cannot go on. fn
// keeps the dropped changes itself, so every path that reruns it (a
// conflict retry) leaves them out too.
func (s *Syncer) applyBatch(ctx context.Context, runID, dirID uint64, batch []*Change,
	trust *trustState, res *applied, committed func()) error {
	var drop map[int]bool
	// One result per run of fn: only the committed run counts.
	got := &applied{}
	fn := func(tx cache.Txn) error {
		*got = applied{counts: map[Action]int{}}
		if err := trust.apply(tx); err != nil {
			return err
		}
		now := time.Now().UTC()
		for i, c := range batch {
			if drop[i] {
				got.skipped++
				continue
			}
			a, err := applyOne(tx, runID, dirID, c, now)
			if errors.Is(err, cache.ErrNameTaken) || errors.Is(err, cache.ErrUUIDTaken) {
				if drop == nil {
					drop = map[int]bool{}
				}
				drop[i] = true
				s.log.Warn("sync: change dropped, the store changed meanwhile", "user", c.Username, "err", err)
				return fmt.Errorf("%w: %w", cache.ErrRerun, err)
			}
			if err != nil {
				return err
			}
			if a == "" {
				got.skipped++
				continue
			}
			got.counts[a]++
		}
		return nil
	}
	if err := s.store.Update(ctx, fn); err != nil {
		return fmt.Errorf("apply batch: %w", err)
	}
	for a, n := range got.counts {
		res.counts[a] += n
	}
	res.skipped += got.skipped
	committed()
	return nil
}

// trustState carries a sync's NamesToken across its batches (nil: write
// with PutUser's lookups). Once a batch finds the token void it stays void
// (the names version never returns to an old value), and later batches no
// longer read the version: reading it only to learn that is what made
// every concurrent name write conflict with them.
type trustState struct {
	token *cache.NamesToken
	void  bool
}

func (t *trustState) apply(tx cache.Txn) error {
	if t.token == nil || t.void {
		return nil
	}
	ok, err := tx.TrustNames(*t.token)
	if err == nil && !ok {
		t.void = true
	}
	return err
}

// applyOne writes one change against the user as it is in this
// transaction, not as it was when the plan was made: an admin may have
// blocked, deleted or renamed the user while the directory was read. It
// returns the action written, or "" when the change no longer applies.
// A name or uuid another user took meanwhile comes back as PutUser's
// cache.ErrNameTaken / cache.ErrUUIDTaken.
func applyOne(tx cache.Txn, runID, dirID uint64, c *Change, now time.Time) (Action, error) {
	var (
		fresh  account.User
		u      account.User
		fields map[string][2]string
	)
	switch c.Action {
	case ActionCreate:
		u = *c.After
		u.ID = 0
		// The record itself says the rest; the audit keeps what an
		// operator looks for.
		fields = map[string][2]string{"role": {"", u.Role}, "state": {"", string(u.State)}}
	default:
		var err error
		fresh, err = tx.UserByID(c.Before.ID)
		if errors.Is(err, cache.ErrNotFound) {
			return "", nil // deleted meanwhile; the next sync creates it again (rule 6)
		}
		if err != nil {
			return "", err
		}
		switch {
		case c.Action == ActionConvertLocal:
			if fresh.Source != account.SourceLocal {
				return "", nil
			}
		case c.Action == ActionAdopt:
			// Still a user of a removed directory, as planned: nobody
			// unblocked or re-homed them during the read.
			if fresh.Source != account.SourceLDAP || fresh.DirectoryID != c.Before.DirectoryID ||
				fresh.BlockReason != account.ReasonDirectoryRemoved {
				return "", nil
			}
		case fresh.Source != account.SourceLDAP || fresh.DirectoryID != dirID:
			return "", nil // rule 10
		}
		u = fresh
		copyDirectoryFields(&u, c.After)
		u.PasswordHash = ""
		// Rule 10 again, now against the current record: an admin block
		// made during the read is kept.
		if fresh.BlockReason != account.ReasonAdmin {
			u.State, u.BlockReason, u.LDAPStatus = c.After.State, c.After.BlockReason, c.After.LDAPStatus
		}
		fields = diff(&fresh, &u)
		if why, ok := c.Fields["skip_reason"]; ok && fields != nil {
			// The rule that put the user out of scope is the plan's to say;
			// an operator reading the run needs it.
			fields["skip_reason"] = why
		}
		if c.Action == ActionConvertLocal {
			if fields == nil {
				fields = map[string][2]string{}
			}
			fields["password_hash"] = [2]string{"set", ""}
		}
		if fields == nil {
			return "", nil
		}
	}

	// Only users that change get LastSyncedAt: an unchanged re-sync must
	// write nothing but its run record (issue 3).
	u.LastSyncedAt = now
	if err := tx.PutUser(&u); err != nil {
		return "", err
	}
	if fresh.Active() && !u.Active() {
		if _, err := tx.DeleteUserSessions(u.ID); err != nil {
			return "", err
		}
	}
	action := c.Action
	if c.Action != ActionCreate && c.Action != ActionConvertLocal && c.Action != ActionAdopt {
		action = actionFor(&fresh, &u)
	}
	reason := c.Reason
	if action != c.Action {
		reason = ""
	}
	err := tx.AddAudit(runID, cache.AuditEntry{At: now, Action: string(action), UserID: u.ID,
		Username: u.Username, Reason: reason, Fields: fields})
	return action, err
}

// actionFor names what a write did to an existing user, from the records
// (the plan's action may have been overtaken by an admin's change).
func actionFor(before, after *account.User) Action {
	switch {
	case before.Active() && !after.Active():
		return ActionBlock
	case !before.Active() && after.Active():
		return ActionUnblock
	case before.State != after.State && after.State != account.StateActive:
		return ActionBlock
	}
	return ActionUpdate
}

// recordPlan writes a dry run's changes as its run's audit list, each
// marked Planned (SPEC §4: preview, dry run and sync share one plan), so
// that an operator reads exactly what a real sync would do before forcing
// one. Skips and unchanged users are left out, as a real run leaves them
// out of its list. Batches as apply's keep each transaction small.
func (s *Syncer) recordPlan(ctx context.Context, runID uint64, changes []Change) error {
	now := time.Now().UTC()
	for start := 0; start < len(changes); start += defaultBatch {
		batch := changes[start:min(start+defaultBatch, len(changes))]
		err := s.store.Update(ctx, func(tx cache.Txn) error {
			for i := range batch {
				if e, ok := plannedEntry(&batch[i], now); ok {
					if err := tx.AddAudit(runID, e); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("recording the plan: %w", err)
		}
	}
	return nil
}

// plannedEntry is the audit entry apply would write for c, as planned.
func plannedEntry(c *Change, now time.Time) (cache.AuditEntry, bool) {
	if c.Action == ActionSkip || c.Action == ActionUnchanged {
		return cache.AuditEntry{}, false
	}
	e := cache.AuditEntry{At: now, Action: string(c.Action), Username: c.Username, Reason: c.Reason,
		Fields: c.Fields, Planned: true}
	if c.Before != nil {
		e.UserID = c.Before.ID
	}
	switch c.Action {
	case ActionCreate:
		if c.After != nil {
			e.Fields = map[string][2]string{"role": {"", c.After.Role}, "state": {"", string(c.After.State)}}
		}
	case ActionConvertLocal:
		e.Fields = maps.Clone(c.Fields)
		if e.Fields == nil {
			e.Fields = map[string][2]string{}
		}
		e.Fields["password_hash"] = [2]string{"set", ""}
	}
	return e, true
}
