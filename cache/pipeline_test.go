package cache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ldapgate/ldapgate/account"
)

// TestPipeline: a sequence of pipelined updates ends exactly as the same
// sequence of Store.Updates would, also when an update reads what the one
// before it (still committing) wrote, and the audit list of the run is
// numbered 1..n in the order of the updates.
func TestPipeline(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		// step i's body, given the ids created beforehand.
		step func(tx *Tx, i int, ids []uint64) error
		n    int
		// check after Wait.
		check func(t *testing.T, s *Store, ids []uint64)
	}{
		{
			name: "independent creates",
			n:    20,
			step: func(tx *Tx, i int, _ []uint64) error {
				for j := range 50 {
					u := ldapUser(fmt.Sprintf("u%d-%d", i, j), 1, fmt.Sprintf("uuid-%d-%d", i, j), "user")
					if err := tx.PutUser(&u); err != nil {
						return err
					}
				}
				return nil
			},
			check: func(t *testing.T, s *Store, _ []uint64) {
				if _, n, _ := s.ListUsers(ctx, UserFilter{DirectoryID: 1}); n != 20*50 {
					t.Errorf("%d users, want %d", n, 20*50)
				}
			},
		},
		{
			// Every step reads and rewrites the one user the step before
			// wrote: each speculative transaction conflicts and is redone.
			name: "read-modify-write of one user",
			n:    12,
			step: func(tx *Tx, i int, ids []uint64) error {
				u, err := tx.UserByID(ids[0])
				if err != nil {
					return err
				}
				u.DisplayName += "x"
				return tx.PutUser(&u)
			},
			check: func(t *testing.T, s *Store, ids []uint64) {
				u, err := s.UserByID(ctx, ids[0])
				if err != nil || u.DisplayName != strings.Repeat("x", 12) {
					t.Errorf("display name %q (%v), want 12 x: an update was lost", u.DisplayName, err)
				}
			},
		},
		{
			// Step 2i renames user i away from "name-i", step 2i+1 creates
			// a new user with that name: a speculative transaction finds the
			// name still taken, which must not be the answer.
			name: "a name freed by the update before",
			n:    10,
			step: func(tx *Tx, i int, ids []uint64) error {
				if i%2 == 0 {
					u, err := tx.UserByID(ids[i/2])
					if err != nil {
						return err
					}
					u.Username = fmt.Sprintf("renamed-%d", i/2)
					return tx.PutUser(&u)
				}
				u := localUser(fmt.Sprintf("name-%d", i/2), "user")
				return tx.PutUser(&u)
			},
			check: func(t *testing.T, s *Store, ids []uint64) {
				for k := range 5 {
					a, err1 := s.UserByName(ctx, fmt.Sprintf("renamed-%d", k))
					b, err2 := s.UserByName(ctx, fmt.Sprintf("name-%d", k))
					if err1 != nil || err2 != nil || a.ID != ids[k] || b.ID == ids[k] {
						t.Errorf("pair %d: renamed %+v %v, new %+v %v", k, a.ID, err1, b.ID, err2)
					}
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, "")
			var ids []uint64
			for k := range 5 {
				u := mustCreate(t, s, localUser(fmt.Sprintf("name-%d", k), "user"))
				ids = append(ids, u.ID)
				// Warm the cache: the pipeline must invalidate it.
				if _, err := s.UserByID(ctx, u.ID); err != nil {
					t.Fatal(err)
				}
			}
			run, err := s.CreateRun(ctx, Run{DirectoryID: 1})
			if err != nil {
				t.Fatal(err)
			}
			p := s.NewPipeline()
			var committed []int
			for i := range tc.n {
				err := p.Update(ctx, func(tx *Tx) error {
					if err := tc.step(tx, i, ids); err != nil {
						return err
					}
					return tx.AddAudit(run.ID, AuditEntry{Action: fmt.Sprint(i)})
				}, func() { committed = append(committed, i) })
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
			}
			if err := p.Wait(); err != nil {
				t.Fatal(err)
			}
			if len(committed) != tc.n {
				t.Fatalf("committed callbacks %v", committed)
			}
			for i, c := range committed {
				if c != i {
					t.Fatalf("committed callbacks out of order: %v", committed)
				}
			}
			tc.check(t, s, ids)
			audit, err := s.RunChanges(ctx, run.ID)
			if err != nil || len(audit) != tc.n {
				t.Fatalf("audit: %d entries, %v", len(audit), err)
			}
			for i, e := range audit {
				if e.Seq != uint64(i+1) || e.Action != fmt.Sprint(i) {
					t.Fatalf("audit entry %d: seq %d action %s", i, e.Seq, e.Action)
				}
			}
			// An Update after the pipeline continues the numbering.
			if err := s.Update(ctx, func(tx *Tx) error { return tx.AddAudit(run.ID, AuditEntry{Action: "after"}) }); err != nil {
				t.Fatal(err)
			}
			audit, _ = s.RunChanges(ctx, run.ID)
			if last := audit[len(audit)-1]; last.Seq != uint64(tc.n+1) || last.Action != "after" {
				t.Fatalf("entry after the pipeline: %+v", last)
			}
		})
	}
}

// TestPipelineErrors: fn's error comes back from its Update (after any
// redo) and leaves the pipeline usable; nothing of the failed update is
// written.
func TestPipelineErrors(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	taken := mustCreate(t, s, localUser("taken", "user"))
	p := s.NewPipeline()
	create := func(name string) error {
		return p.Update(ctx, func(tx *Tx) error {
			u := localUser(name, "user")
			return tx.PutUser(&u)
		}, nil)
	}
	if err := create("a"); err != nil {
		t.Fatal(err)
	}
	if err := create("taken"); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("create of a taken name: %v, want ErrNameTaken", err)
	}
	errStop := errors.New("stop")
	if err := p.Update(ctx, func(tx *Tx) error {
		u := localUser("half", "user")
		if err := tx.PutUser(&u); err != nil {
			return err
		}
		return errStop
	}, func() { t.Error("committed called for a failed update") }); !errors.Is(err, errStop) {
		t.Fatalf("fn error: %v", err)
	}
	if err := create("b"); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"a": true, "b": true, "half": false} {
		_, err := s.UserByName(ctx, name)
		if (err == nil) != want {
			t.Errorf("user %s: %v", name, err)
		}
	}
	if u, _ := s.UserByName(ctx, "taken"); u.ID != taken.ID {
		t.Errorf("taken name now belongs to %d", u.ID)
	}

	// A cancelled context stops the pipeline.
	cctx, cancel := context.WithCancel(ctx)
	p = s.NewPipeline()
	cancel()
	if err := p.Update(cctx, func(*Tx) error { return nil }, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	if err := p.Wait(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait after cancel: %v", err)
	}
}

// TestPipelineUserCache: once a pipelined update's commit is done, no
// reader gets the user's old state from the cache.
func TestPipelineUserCache(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	u := mustCreate(t, s, localUser("c", "user"))
	p := s.NewPipeline()
	for i := range 5 {
		if _, err := s.UserByID(ctx, u.ID); err != nil { // fill the cache
			t.Fatal(err)
		}
		state := account.StateBlocked
		if i%2 == 1 {
			state = account.StateActive
		}
		err := p.Update(ctx, func(tx *Tx) error {
			x, err := tx.UserByID(u.ID)
			if err != nil {
				return err
			}
			x.State = state
			return tx.PutUser(&x)
		}, func() {
			if got, _ := s.UserByID(ctx, u.ID); got.State != state {
				t.Errorf("after commit %d the cache serves %s, want %s", i, got.State, state)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
}

// An fn that returns ErrRerun runs again in a fresh transaction, through
// Store.Update and through a pipeline, and what it wrote before asking is
// not committed.
func TestErrRerun(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	run := func(t *testing.T, update func(fn func(*Tx) error) error) {
		t.Helper()
		runs := 0
		name := fmt.Sprintf("rerun-%p@local", &runs)
		err := update(func(tx *Tx) error {
			runs++
			u := localUser(fmt.Sprintf("%s-try%d", name, runs), "user")
			if err := tx.PutUser(&u); err != nil {
				return err
			}
			if runs < 3 {
				return fmt.Errorf("try %d: %w", runs, ErrRerun)
			}
			return nil
		})
		if err != nil || runs != 3 {
			t.Fatalf("update: %v after %d runs", err, runs)
		}
		for try, want := range []bool{false, false, true} {
			_, err := s.UserByName(ctx, fmt.Sprintf("%s-try%d", name, try+1))
			if got := err == nil; got != want {
				t.Errorf("user of try %d stored: %v, want %v", try+1, got, want)
			}
		}
	}
	t.Run("Store.Update", func(t *testing.T) {
		run(t, func(fn func(*Tx) error) error { return s.Update(ctx, fn) })
	})
	t.Run("Pipeline", func(t *testing.T) {
		p := s.NewPipeline()
		run(t, func(fn func(*Tx) error) error {
			// A first update in flight, so the rerun meets the redo path.
			if err := p.Update(ctx, func(tx *Tx) error {
				u := localUser(fmt.Sprintf("first-%p@local", p), "user")
				return tx.PutUser(&u)
			}, nil); err != nil {
				return err
			}
			if err := p.Update(ctx, fn, nil); err != nil {
				return err
			}
			return p.Wait()
		})
	})
}
