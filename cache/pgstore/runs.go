package pgstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ldapgate/ldapgate/cache"
)

// keepRuns is how many runs per directory are kept (as on badger).
const keepRuns = 1000

// CreateRun: see cache.Backend.
func (s *Store) CreateRun(ctx context.Context, r cache.Run) (cache.Run, error) {
	if r.StartedAt.IsZero() {
		r.StartedAt = time.Now().UTC()
	}
	if r.Result == "" {
		r.Result = cache.RunRunning
	}
	err := s.Update(ctx, func(t cache.Txn) error {
		tx := t.(*Tx)
		var id int64
		if err := tx.queryRow(`SELECT nextval(pg_get_serial_sequence('runs', 'id'))`, nil, &id); err != nil {
			return err
		}
		r.ID = uint64(id)
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		_, err = tx.exec(`INSERT INTO runs (id, directory_id, record) VALUES ($1, $2, $3)`, id, int64(r.DirectoryID), b)
		return err
	})
	if err != nil {
		return cache.Run{}, fmt.Errorf("create run: %w", err)
	}
	// Old runs go with their audit, in one statement; a failure only
	// leaves them for the next run to prune.
	if _, err := s.pool.Exec(ctx, `WITH old AS (
			DELETE FROM runs WHERE directory_id = $1 AND id <= (
				SELECT id FROM runs WHERE directory_id = $1 ORDER BY id DESC OFFSET $2 LIMIT 1)
			RETURNING id)
		DELETE FROM audit WHERE run_id IN (SELECT id FROM old)`,
		int64(r.DirectoryID), keepRuns); err != nil {
		s.log.Warn("pruning old sync runs failed", "directory_id", r.DirectoryID, "err", err)
	}
	return r, nil
}

// FinishRun: see cache.Backend.
func (s *Store) FinishRun(ctx context.Context, r cache.Run) error {
	if r.FinishedAt.IsZero() {
		r.FinishedAt = time.Now().UTC()
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("finish run %d: %w", r.ID, err)
	}
	err = s.Update(ctx, func(t cache.Txn) error {
		tx := t.(*Tx)
		var dir int64
		if err := tx.queryRow(`SELECT directory_id FROM runs WHERE id = $1`, []any{int64(r.ID)}, &dir); err != nil {
			return err
		}
		if uint64(dir) != r.DirectoryID {
			return fmt.Errorf("run belongs to directory %d, not %d", dir, r.DirectoryID)
		}
		_, err := tx.exec(`UPDATE runs SET record = $2 WHERE id = $1`, int64(r.ID), b)
		return err
	})
	if err != nil {
		return fmt.Errorf("finish run %d: %w", r.ID, err)
	}
	return nil
}

// Run: see cache.Backend.
func (s *Store) Run(ctx context.Context, runID uint64) (cache.Run, error) {
	var b []byte
	err := s.oneRead(ctx, func(tx *Tx) error {
		return tx.queryRow(`SELECT record FROM runs WHERE id = $1`, []any{int64(runID)}, &b)
	})
	var r cache.Run
	if err == nil {
		err = json.Unmarshal(b, &r)
	}
	if err != nil {
		return cache.Run{}, fmt.Errorf("run %d: %w", runID, err)
	}
	return r, nil
}

// Runs: see cache.Backend (newest first; dirID 0: every directory).
func (s *Store) Runs(ctx context.Context, dirID uint64, limit int) ([]cache.Run, error) {
	sql, args := `SELECT record FROM runs ORDER BY id DESC`, []any{}
	if dirID != 0 {
		sql, args = `SELECT record FROM runs WHERE directory_id = $1 ORDER BY id DESC`, []any{int64(dirID)}
	}
	if limit > 0 {
		args = append(args, limit)
		sql += fmt.Sprintf(" LIMIT $%d", len(args))
	}
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("runs of directory %d: %w", dirID, err)
	}
	defer rows.Close()
	var out []cache.Run
	for rows.Next() {
		var b []byte
		var r cache.Run
		if err := rows.Scan(&b); err != nil {
			return nil, fmt.Errorf("runs of directory %d: %w", dirID, err)
		}
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("runs of directory %d: %w", dirID, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("runs of directory %d: %w", dirID, err)
	}
	return out, nil
}

// RunChanges: see cache.Backend (in seq order; ErrNotFound for no run).
func (s *Store) RunChanges(ctx context.Context, runID uint64) ([]cache.AuditEntry, error) {
	out := []cache.AuditEntry{}
	err := s.readTx(ctx, func(tx *Tx) error {
		var one int
		if err := tx.queryRow(`SELECT 1 FROM runs WHERE id = $1`, []any{int64(runID)}, &one); err != nil {
			return err
		}
		rows, err := tx.tx.Query(ctx, `SELECT record FROM audit WHERE run_id = $1 ORDER BY seq`, int64(runID))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var b []byte
			if err := rows.Scan(&b); err != nil {
				return err
			}
			if out, err = cache.DecodeAudit(out, b); err != nil {
				return err
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("changes of run %d: %w", runID, err)
	}
	return out, nil
}
