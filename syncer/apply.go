package syncer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
)

// defaultBatch is how many changes one store transaction applies. Each
// change writes about six keys (user, name, uuid and listing indexes, audit
// entry and sequence) and under 2 KiB, so 500 stay far below badger's
// per-transaction limit while keeping the number of commits of a 100k-user
// first sync at 200.
const defaultBatch = 500

// testHookAfterBatch, when set (tests only), is called after each committed
// batch with the number of changes applied so far.
var testHookAfterBatch func(applied int)

// applied is what apply did.
type applied struct {
	counts  map[Action]int // by action, as written
	skipped int            // planned writes dropped because the store changed meanwhile
}

// apply writes the plan's changes in batches, each batch one store
// transaction holding the changed users and their audit entries: after a
// crash the store holds whole batches only, and audit and data agree.
// Blocking a user deletes their sessions in the same transaction (SPEC §5:
// the next request is refused). A cancelled ctx stops between batches.
func (s *Syncer) apply(ctx context.Context, runID uint64, dirID uint64, changes []Change) (applied, error) {
	res := applied{counts: map[Action]int{}}
	batch := make([]*Change, 0, s.batch)
	done := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := s.applyBatch(ctx, runID, dirID, batch, &res); err != nil {
			return err
		}
		done += len(batch)
		batch = batch[:0]
		if testHookAfterBatch != nil {
			testHookAfterBatch(done)
		}
		return nil
	}
	for i := range changes {
		if !changes[i].Action.Writes() {
			continue
		}
		batch = append(batch, &changes[i])
		if len(batch) == s.batch {
			if err := flush(); err != nil {
				return res, err
			}
		}
	}
	return res, flush()
}

// applyBatch commits one batch; a batch badger finds too big is split in
// two rather than failing the sync.
func (s *Syncer) applyBatch(ctx context.Context, runID, dirID uint64, batch []*Change, res *applied) error {
	var got applied
	err := s.store.Update(ctx, func(tx *cache.Tx) error {
		// Update may run this again after a conflict: start over each time.
		got = applied{counts: map[Action]int{}}
		now := time.Now().UTC()
		for _, c := range batch {
			a, err := applyOne(tx, runID, dirID, c, now)
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
	})
	if errors.Is(err, cache.ErrTxnTooBig) && len(batch) > 1 {
		h := len(batch) / 2
		if err := s.applyBatch(ctx, runID, dirID, batch[:h], res); err != nil {
			return err
		}
		return s.applyBatch(ctx, runID, dirID, batch[h:], res)
	}
	if err != nil {
		return fmt.Errorf("apply batch: %w", err)
	}
	for a, n := range got.counts {
		res.counts[a] += n
	}
	res.skipped += got.skipped
	return nil
}

// applyOne writes one change against the user as it is in this
// transaction, not as it was when the plan was made: an admin may have
// blocked, deleted or renamed the user while the directory was read. It
// returns the action written, or "" when the change no longer applies.
func applyOne(tx *cache.Tx, runID, dirID uint64, c *Change, now time.Time) (Action, error) {
	var (
		fresh account.User
		u     account.User
	)
	switch c.Action {
	case ActionCreate:
		u = c.After
		u.ID = 0
	default:
		var err error
		fresh, err = tx.UserByID(c.Before.ID)
		if errors.Is(err, cache.ErrNotFound) {
			return "", nil // deleted meanwhile; the next sync creates it again (rule 6)
		}
		if err != nil {
			return "", err
		}
		if c.Action == ActionConvertLocal {
			if fresh.Source != account.SourceLocal {
				return "", nil
			}
		} else if fresh.Source != account.SourceLDAP || fresh.DirectoryID != dirID {
			return "", nil // rule 10
		}
		u = fresh
		copyDirectoryFields(&u, &c.After)
		u.PasswordHash = ""
		// Rule 10 again, now against the current record: an admin block
		// made during the read is kept.
		if fresh.BlockReason != account.ReasonAdmin {
			u.State, u.BlockReason = c.After.State, c.After.BlockReason
		}
	}

	// Names and uuids are checked here first because a failed PutUser may
	// have written part of its index keys into the transaction.
	if c.Action == ActionCreate || fresh.Username != u.Username {
		if o, err := tx.UserByName(u.Username); err == nil && o.ID != fresh.ID {
			return "", nil
		} else if err != nil && !errors.Is(err, cache.ErrNotFound) {
			return "", err
		}
	}
	if u.LDAPUUID != "" && (c.Action == ActionCreate || fresh.LDAPUUID != u.LDAPUUID || fresh.DirectoryID != u.DirectoryID) {
		if o, err := tx.UserByUUID(dirID, u.LDAPUUID); err == nil && o.ID != fresh.ID {
			return "", nil
		} else if err != nil && !errors.Is(err, cache.ErrNotFound) {
			return "", err
		}
	}

	fields := diff(&fresh, &u)
	if c.Action == ActionConvertLocal {
		fields["password_hash"] = [2]string{"set", ""}
	}
	if c.Action != ActionCreate && len(fields) == 0 {
		return "", nil
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
	if c.Action != ActionCreate && c.Action != ActionConvertLocal {
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
