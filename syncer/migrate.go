package syncer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/directory"
)

// MigrateResult says what a migration did.
type MigrateResult struct {
	// RunID is the run whose audit list holds the renames.
	RunID uint64 `json:"run_id"`
	// Renamed users got username@domain.
	Renamed int `json:"renamed"`
	// Unchanged users already had their new name.
	Unchanged int `json:"unchanged"`
	// NotInDirectory users were not returned by the read (deleted in LDAP,
	// or no login attribute): they keep their name and the next sync blocks
	// them as usual.
	NotInDirectory int `json:"not_in_directory"`
	// AlreadyMigrated: the directory already used username_at_domain;
	// nothing was done.
	AlreadyMigrated bool `json:"already_migrated"`
}

// tempNamePrefix marks a name held only inside the migration transaction:
// a NUL byte no login name can carry.
const tempNamePrefix = "\x00migrating\x00"

// Migrate switches a legacy (naming: email) directory to
// username_at_domain (SPEC §3): every user of the directory is renamed from
// the mail name to login@domain, and the naming override is recorded, in
// ONE store transaction, so a crash or a conflict leaves everything as it
// was. It reads the directory first (any read error: no change) to learn
// each user's login attribute, matching entries to users by uuid. If any
// new name is held by a user outside the migration, or two users would get
// the same name, nothing changes and the error is a *ConflictError listing
// the names.
//
// A directory too big for one badger transaction is still renamed all or
// nothing: badgerstore.Store.Update commits it through its journal
// (cache/badgerstore/bigtx.go).
func (s *Syncer) Migrate(ctx context.Context, dirID uint64) (MigrateResult, error) {
	// A sync must not plan with the old naming while names change under it.
	if err := s.lockDirectory(ctx, dirID); err != nil {
		return MigrateResult{}, err
	}
	defer s.unlockDirectory(dirID)

	e, cfg, err := s.effective(ctx, dirID)
	if err != nil {
		return MigrateResult{}, err
	}
	if cfg.Naming != config.NamingEmail {
		return MigrateResult{AlreadyMigrated: true}, nil
	}
	target := cfg
	target.Naming = config.NamingUsernameAtDomain

	byUUID := map[string]directory.User{}
	if err := e.Client.ReadUsers(ctx, func(u directory.User) error {
		if u.UUID != "" {
			byUUID[u.UUID] = u
		}
		return nil
	}); err != nil {
		return MigrateResult{}, fmt.Errorf("migrate %s: read users: %w", cfg.Name, err)
	}

	run, err := s.store.CreateRun(ctx, cache.Run{DirectoryID: dirID, Directory: cfg.Name, Trigger: TriggerMigrate,
		StartedAt: time.Now().UTC(), DirectoryUsers: len(byUUID), Counts: map[string]int{}})
	if err != nil {
		return MigrateResult{}, fmt.Errorf("migrate %s: %w", cfg.Name, err)
	}
	var res MigrateResult
	err = s.store.Update(ctx, func(tx cache.Txn) error {
		res = MigrateResult{RunID: run.ID}
		users, err := s.store.UsersOfDirectory(ctx, dirID)
		if err != nil {
			return err
		}
		type rename struct {
			u        account.User
			old, new string
		}
		var renames []rename
		newNames := map[string]int{} // new name → users wanting it
		moving := map[string]bool{}  // names given up by users of the migration
		for _, u := range users {
			if u.Source != account.SourceLDAP || u.DirectoryID != dirID {
				continue
			}
			// Read through tx: the list came from outside it.
			u, err := tx.UserByID(u.ID)
			if errors.Is(err, cache.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			entry, ok := byUUID[u.LDAPUUID]
			var name string
			if ok {
				name, ok = directory.CanonicalName(target, entry)
			}
			switch {
			case !ok:
				res.NotInDirectory++
			case name == u.Username:
				res.Unchanged++
			default:
				renames = append(renames, rename{u, u.Username, name})
				newNames[name]++
				moving[u.Username] = true
			}
		}
		var conflicts []string
		for _, r := range renames {
			if newNames[r.new] > 1 {
				conflicts = append(conflicts, r.new)
				continue
			}
			holder, err := tx.UserByName(r.new)
			switch {
			case errors.Is(err, cache.ErrNotFound):
			case err != nil:
				return err
			case holder.ID != r.u.ID && !moving[holder.Username]:
				conflicts = append(conflicts, r.new)
			}
		}
		if len(conflicts) > 0 {
			slices.Sort(conflicts)
			return &ConflictError{Names: slices.Compact(conflicts)}
		}
		// Names wanted by another migrating user are first parked on a
		// temporary name, so chains and swaps (a's mail is b's new name)
		// work in one transaction whatever the order.
		for i := range renames {
			r := &renames[i]
			if newNames[r.u.Username] == 0 {
				continue
			}
			r.u.Username = fmt.Sprintf("%s%d", tempNamePrefix, r.u.ID)
			if err := tx.PutUser(&r.u); err != nil {
				return err
			}
		}
		now := time.Now().UTC()
		for _, r := range renames {
			u := r.u
			u.Username = r.new
			if err := tx.PutUser(&u); err != nil {
				return err
			}
			if err := tx.AddAudit(run.ID, cache.AuditEntry{At: now, Action: string(ActionUpdate), UserID: u.ID,
				Username: u.Username, Reason: "migrate", Fields: map[string][2]string{"username": {r.old, u.Username}}}); err != nil {
				return err
			}
			res.Renamed++
		}
		return tx.SetNamingOverride(dirID, config.NamingUsernameAtDomain)
	})
	run.FinishedAt = time.Now().UTC()
	fctx := context.WithoutCancel(ctx)
	if err != nil {
		run.Result, run.Error = cache.RunFailed, err.Error()
		if ferr := s.store.FinishRun(fctx, run); ferr != nil {
			s.log.Error("recording the migration failed", "run", run.ID, "err", ferr)
		}
		var ce *ConflictError
		if errors.As(err, &ce) {
			s.log.Warn("migration cancelled: names taken", "directory", cfg.Name, "names", ce.Names)
			return MigrateResult{RunID: run.ID}, ce
		}
		return MigrateResult{RunID: run.ID}, fmt.Errorf("migrate %s: %w", cfg.Name, err)
	}
	run.Result = cache.RunSuccess
	run.Counts[string(ActionUpdate)] = res.Renamed
	if ferr := s.store.FinishRun(fctx, run); ferr != nil {
		s.log.Error("recording the migration failed", "run", run.ID, "err", ferr)
	}
	s.log.Info("directory migrated to username_at_domain", "directory", cfg.Name, "renamed", res.Renamed,
		"unchanged", res.Unchanged, "not_in_directory", res.NotInDirectory)
	return res, nil
}

// RemoveDirectory applies rule 9 before a directory is deleted: every user
// of it becomes blocked / directory_removed and loses their sessions, in
// one transaction (admin blocks stay admin blocks: rule 10; a directory too
// big for one badger transaction goes through the store's journal,
// bigtx.go). The blocks are audited under a run with trigger directory_removed. It returns the
// number of users blocked. The directory need not be in the set any more.
func (s *Syncer) RemoveDirectory(ctx context.Context, dirID uint64) (int, error) {
	if err := s.lockDirectory(ctx, dirID); err != nil {
		return 0, err
	}
	defer s.unlockDirectory(dirID)

	name := "removed"
	if e, ok := s.dirs.ByID(dirID); ok {
		name = e.Config.Name
	}
	users, err := s.store.UsersOfDirectory(ctx, dirID)
	if err != nil {
		return 0, fmt.Errorf("remove directory %d: %w", dirID, err)
	}
	run, err := s.store.CreateRun(ctx, cache.Run{DirectoryID: dirID, Directory: name, Trigger: TriggerRemove,
		StartedAt: time.Now().UTC(), Counts: map[string]int{}})
	if err != nil {
		return 0, fmt.Errorf("remove directory %d: %w", dirID, err)
	}
	var ids []uint64
	for _, u := range users {
		if u.Source == account.SourceLDAP && u.DirectoryID == dirID {
			ids = append(ids, u.ID)
		}
	}
	blocked := 0
	err = s.store.Update(ctx, func(tx cache.Txn) error {
		// fn may run again (a conflict, or the big-transaction mode):
		// count only the attempt that returns.
		blocked = 0
		n := 0
		now := time.Now().UTC()
		for _, id := range ids {
			u, err := tx.UserByID(id)
			if errors.Is(err, cache.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if u.DirectoryID != dirID || u.BlockReason == account.ReasonAdmin ||
				(u.State == account.StateBlocked && u.BlockReason == account.ReasonDirectoryRemoved) {
				continue
			}
			before := u
			u.State, u.BlockReason = account.StateBlocked, account.ReasonDirectoryRemoved
			if err := tx.PutUser(&u); err != nil {
				return err
			}
			if _, err := tx.DeleteUserSessions(id); err != nil {
				return err
			}
			if err := tx.AddAudit(run.ID, cache.AuditEntry{At: now, Action: string(ActionBlock), UserID: id,
				Username: u.Username, Reason: string(account.ReasonDirectoryRemoved), Fields: diff(&before, &u)}); err != nil {
				return err
			}
			n++
		}
		blocked = n
		return nil
	})
	run.FinishedAt, run.Result = time.Now().UTC(), cache.RunSuccess
	run.Counts[string(ActionBlock)] = blocked
	if err != nil {
		run.Result, run.Error = cache.RunFailed, err.Error()
	}
	if ferr := s.store.FinishRun(context.WithoutCancel(ctx), run); ferr != nil {
		s.log.Error("recording the directory removal failed", "run", run.ID, "err", ferr)
	}
	if s.m != nil && blocked > 0 {
		s.m.SyncChanges.WithLabelValues(name, string(ActionBlock)).Add(float64(blocked))
	}
	s.RefreshUserMetrics(context.WithoutCancel(ctx))
	if err != nil {
		return blocked, fmt.Errorf("remove directory %d: %w", dirID, err)
	}
	s.log.Info("directory removed: users blocked", "directory", name, "directory_id", dirID, "blocked", blocked)
	return blocked, nil
}

// lockDirectory waits until no real sync of dirID runs and holds the slot,
// so migrations and removals never interleave with a sync's batches.
func (s *Syncer) lockDirectory(ctx context.Context, dirID uint64) error {
	for {
		s.mu.Lock()
		f, ok := s.running[dirID]
		if !ok {
			f := &flight{done: make(chan struct{}), exclusive: true}
			s.running[dirID] = f
			s.mu.Unlock()
			// On a shared store the other replicas' syncs are held off too.
			release, err := s.lockShared(ctx, dirID)
			if err != nil {
				s.unlockDirectory(dirID)
				return err
			}
			f.release = release
			return nil
		}
		s.mu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
			return fmt.Errorf("waiting for the running sync of directory %d: %w", dirID, ctx.Err())
		}
	}
}

func (s *Syncer) unlockDirectory(dirID uint64) {
	s.mu.Lock()
	f := s.running[dirID]
	delete(s.running, dirID)
	s.mu.Unlock()
	if f.release != nil {
		f.release()
	}
	close(f.done)
}
