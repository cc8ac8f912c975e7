package pgstore_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/internal/pgtest"
)

// TestAuditChunksAndSingleRows: entries are stored 256 to a row, several
// runs interleaved in one transaction keep their own order and seqs, and
// rows of one entry each (a store written before chunks) read as before,
// with new entries continuing after them.
func TestAuditChunksAndSingleRows(t *testing.T) {
	ctx := context.Background()
	s := open(t, pgtest.DSN(t))
	a, _ := s.CreateRun(ctx, cache.Run{DirectoryID: 1, Directory: "one", Trigger: "api"})
	b, _ := s.CreateRun(ctx, cache.Run{DirectoryID: 2, Directory: "two", Trigger: "api"})
	// An entry of run a written as before chunks: one object per row.
	if _, err := s.Pool().Exec(ctx, `INSERT INTO audit (run_id, seq, record) VALUES ($1, 1, $2)`,
		int64(a.ID), []byte(`{"seq":1,"action":"create","username":"legacy"}`)); err != nil {
		t.Fatal(err)
	}
	err := s.Update(ctx, func(tx cache.Txn) error {
		for i := range 600 {
			run := a.ID
			if i%3 == 2 {
				run = b.ID
			}
			if err := tx.AddAudit(run, cache.AuditEntry{Action: "create", Username: fmt.Sprintf("u%d", i)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var rows int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM audit`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	// 1 legacy row, and 600 entries that alternate runs (a, a, b, ...):
	// chunks end at each change of run, so this is many rows, but fewer
	// than entries.
	if rows < 2 || rows > 1+600 {
		t.Errorf("audit rows: %d", rows)
	}
	for _, c := range []struct {
		run   uint64
		want  int
		first string
	}{{a.ID, 401, "legacy"}, {b.ID, 200, "u2"}} {
		es, err := s.RunChanges(ctx, c.run)
		if err != nil || len(es) != c.want {
			t.Fatalf("run %d: %d entries, %v; want %d", c.run, len(es), err, c.want)
		}
		for i, e := range es {
			if e.Seq != uint64(i+1) {
				t.Fatalf("run %d entry %d: seq %d", c.run, i, e.Seq)
			}
		}
		if es[0].Username != c.first {
			t.Errorf("run %d first entry %q, want %q", c.run, es[0].Username, c.first)
		}
	}
	// One run's 1000 entries in one transaction: four rows.
	c, _ := s.CreateRun(ctx, cache.Run{DirectoryID: 3, Directory: "three", Trigger: "api"})
	if err := s.Update(ctx, func(tx cache.Txn) error {
		for range 1000 {
			if err := tx.AddAudit(c.ID, cache.AuditEntry{Action: "create"}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM audit WHERE run_id = $1`, int64(c.ID)).Scan(&rows); err != nil || rows != 4 {
		t.Errorf("rows of a run of 1000 entries: %d %v, want 4", rows, err)
	}
}
