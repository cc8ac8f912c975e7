package badgerstore

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/ldapgate/ldapgate/cache"
)

func TestRunsAndAudit(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	var runs []cache.Run
	for i, dir := range []uint64{1, 2, 1, 1} {
		r, err := s.CreateRun(ctx, cache.Run{DirectoryID: dir, Directory: "d", Trigger: "api"})
		if err != nil {
			t.Fatal(err)
		}
		if r.Result != cache.RunRunning || r.StartedAt.IsZero() || (i > 0 && r.ID <= runs[i-1].ID) {
			t.Fatalf("CreateRun: %+v", r)
		}
		runs = append(runs, r)
	}
	ids := func(rs []cache.Run) []uint64 {
		var out []uint64
		for _, r := range rs {
			out = append(out, r.ID)
		}
		return out
	}
	tests := []struct {
		name  string
		dir   uint64
		limit int
		want  []uint64
	}{
		{"directory 1 newest first", 1, 0, []uint64{runs[3].ID, runs[2].ID, runs[0].ID}},
		{"limit", 1, 2, []uint64{runs[3].ID, runs[2].ID}},
		{"directory 2", 2, 0, []uint64{runs[1].ID}},
		{"all", 0, 0, []uint64{runs[3].ID, runs[2].ID, runs[1].ID, runs[0].ID}},
		{"none", 3, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Runs(ctx, tc.dir, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if g := ids(got); !slices.Equal(g, tc.want) {
				t.Fatalf("Runs = %v, want %v", g, tc.want)
			}
		})
	}

	// Audit entries from two transactions keep their order.
	r := runs[2]
	actions := []string{"create", "update", "block", "unblock", "skip"}
	for _, batch := range [][]string{actions[:3], actions[3:]} {
		err := s.Update(ctx, func(tx *Tx) error {
			for _, a := range batch {
				if err := tx.AddAudit(r.ID, cache.AuditEntry{Action: a, Username: a + "@x", Fields: map[string][2]string{"role": {"user", "admin"}}}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// An aborted batch leaves no entries and no gap.
	s.Update(ctx, func(tx *Tx) error {
		tx.AddAudit(r.ID, cache.AuditEntry{Action: "ghost"})
		return errors.New("abort")
	})
	if err := s.Update(ctx, func(tx *Tx) error { return tx.AddAudit(runs[3].ID, cache.AuditEntry{Action: "other-run"}) }); err != nil {
		t.Fatal(err)
	}
	changes, err := s.RunChanges(ctx, r.ID)
	if err != nil || len(changes) != len(actions) {
		t.Fatalf("RunChanges: %d, %v", len(changes), err)
	}
	for i, c := range changes {
		if c.Seq != uint64(i+1) || c.Action != actions[i] || c.At.IsZero() || c.Fields["role"][1] != "admin" {
			t.Fatalf("change %d: %+v", i, c)
		}
	}
	if c, _ := s.RunChanges(ctx, runs[0].ID); c == nil || len(c) != 0 {
		t.Fatalf("changes of a run without any: %#v (want empty, non-nil for JSON [])", c)
	}
	if _, err := s.RunChanges(ctx, 9999); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("changes of unknown run: %v", err)
	}

	r.Result = cache.RunSuccess
	r.Counts = map[string]int{"create": 1}
	r.DirectoryUsers = 10
	if err := s.FinishRun(ctx, r); err != nil {
		t.Fatal(err)
	}
	got, err := s.Run(ctx, r.ID)
	if err != nil || got.Result != cache.RunSuccess || got.FinishedAt.Before(got.StartedAt) || got.Counts["create"] != 1 || got.DirectoryUsers != 10 {
		t.Fatalf("Run after finish: %+v, %v", got, err)
	}
	if err := s.FinishRun(ctx, cache.Run{ID: 9999, FinishedAt: time.Now()}); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("finish unknown run: %v", err)
	}
	if _, err := s.Run(ctx, 9999); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("unknown run: %v", err)
	}
}

func TestRunsPruned(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	var ids []uint64
	for i := 0; i < 5; i++ {
		r, err := s.CreateRun(ctx, cache.Run{DirectoryID: 1})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
		err = s.Update(ctx, func(tx *Tx) error {
			for j := 0; j < 3; j++ {
				if err := tx.AddAudit(r.ID, cache.AuditEntry{Action: "create"}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	other, _ := s.CreateRun(ctx, cache.Run{DirectoryID: 2})
	if err := s.pruneRuns(ctx, 1, 2); err != nil {
		t.Fatal(err)
	}
	runs, _ := s.Runs(ctx, 1, 0)
	if len(runs) != 2 || runs[0].ID != ids[4] || runs[1].ID != ids[3] {
		t.Fatalf("kept %+v, want the two newest", runs)
	}
	for i, id := range ids {
		_, err := s.Run(ctx, id)
		c, cerr := s.RunChanges(ctx, id)
		if i < 3 {
			if !errors.Is(err, cache.ErrNotFound) || !errors.Is(cerr, cache.ErrNotFound) {
				t.Errorf("pruned run %d: %v / %v", id, err, cerr)
			}
		} else if err != nil || len(c) != 3 {
			t.Errorf("kept run %d: %v, %d changes", id, err, len(c))
		}
	}
	if _, err := s.Run(ctx, other.ID); err != nil {
		t.Errorf("run of another directory pruned: %v", err)
	}
	// No audit key of a pruned run is left behind.
	for _, id := range ids[:3] {
		left := 0
		txn := s.db.NewTransaction(false)
		iterate(ctx, txn, key(pAudit, id), func(_, _ []byte) error { left++; return nil })
		txn.Discard()
		if left != 0 {
			t.Errorf("run %d: %d audit keys left", id, left)
		}
	}
}
