package badgerstore

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
)

// A block must be visible to every read that starts after UpdateUser
// returns, however many readers are filling the cache at the same time.
func TestCacheCoherentUnderConcurrency(t *testing.T) {
	ctx := context.Background()
	s, m := openTestMetrics(t)
	u := mustCreate(t, s, ldapUser("hot@example.com", 1, "hot", "user"))

	var (
		stop    atomic.Bool
		wg      sync.WaitGroup
		readErr atomic.Value
	)
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if _, err := s.UserByID(ctx, u.ID); err != nil {
					readErr.Store(err)
					return
				}
				if _, err := s.UserByName(ctx, "hot@example.com"); err != nil {
					readErr.Store(err)
					return
				}
			}
		}()
	}
	rounds := 300
	if testing.Short() {
		rounds = 50
	}
	for i := 0; i < rounds; i++ {
		want := account.StateBlocked
		if i%2 == 1 {
			want = account.StateActive
		}
		var err error
		if i%3 == 0 {
			err = s.Update(ctx, func(tx *Tx) error {
				x, err := tx.UserByID(u.ID)
				if err != nil {
					return err
				}
				x.State = want
				return tx.PutUser(&x)
			})
		} else {
			_, err = s.UpdateUser(ctx, u.ID, func(x *account.User) error { x.State = want; return nil })
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, get := range []func() (account.User, error){
			func() (account.User, error) { return s.UserByID(ctx, u.ID) },
			func() (account.User, error) { return s.UserByName(ctx, "hot@example.com") },
		} {
			got, err := get()
			if err != nil {
				t.Fatal(err)
			}
			if got.State != want {
				stop.Store(true)
				wg.Wait()
				t.Fatalf("round %d: read state %s after writing %s (stale cache)", i, got.State, want)
			}
		}
	}
	stop.Store(true)
	wg.Wait()
	if err, _ := readErr.Load().(error); err != nil {
		t.Fatal(err)
	}
	hits := counterValue(t, m.CacheRequests.WithLabelValues("user", "hit"))
	misses := counterValue(t, m.CacheRequests.WithLabelValues("user", "miss"))
	if hits == 0 || misses == 0 {
		t.Fatalf("cache metrics: %v hits, %v misses; want both counted", hits, misses)
	}
}

// Deleting and renaming must drop cache entries too.
func TestCacheInvalidatedOnDeleteAndRename(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	a := mustCreate(t, s, localUser("a@local", "user"))
	b := mustCreate(t, s, localUser("b@local", "user"))
	for _, id := range []uint64{a.ID, b.ID} {
		s.UserByID(ctx, id) // warm
	}
	s.UserByName(ctx, "a@local")
	s.UserByName(ctx, "b@local")
	if _, err := s.UpdateUser(ctx, a.ID, func(u *account.User) error { u.Username = "a2@local"; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteUser(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UserByName(ctx, "a@local"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("old name after rename: %v", err)
	}
	if got, _ := s.UserByID(ctx, a.ID); got.Username != "a2@local" {
		t.Errorf("by id after rename: %q", got.Username)
	}
	if _, err := s.UserByID(ctx, b.ID); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("by id after delete: %v", err)
	}
	if _, err := s.UserByName(ctx, "b@local"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("by name after delete: %v", err)
	}
}

// Callers get copies: changing a returned user changes neither the store
// nor the next caller's copy.
func TestReturnedUsersAreCopies(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	u := mustCreate(t, s, ldapUser("c@example.com", 1, "c", "user"))
	first, _ := s.UserByID(ctx, u.ID)
	first.Role = "admin"
	first.State = account.StateBlocked
	first.Groups = append(first.Groups, "extra") // clipped: must not write into the cached array
	second, _ := s.UserByID(ctx, u.ID)
	if second.Role != "user" || second.State != account.StateActive || len(second.Groups) != 1 {
		t.Fatalf("cached user changed through a returned copy: %+v", second)
	}
}

// The session check calls UserByID on every proxied request.
func TestUserByIDHitDoesNotAllocate(t *testing.T) {
	ctx := context.Background()
	s, _ := openTestMetrics(t)
	u := mustCreate(t, s, ldapUser("fast@example.com", 1, "f", "user"))
	if _, err := s.UserByID(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := s.UserByID(ctx, u.ID); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("UserByID cache hit: %v allocs/op, want 0", allocs)
	}
}

func BenchmarkUserByID(b *testing.B) {
	ctx := context.Background()
	s, _ := openTestMetrics(b)
	u := mustCreate(b, s, ldapUser("fast@example.com", 1, "f", "user"))
	b.Run("hit", func(b *testing.B) {
		s.UserByID(ctx, u.ID)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.UserByID(ctx, u.ID); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("miss", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s.invalidate([]uint64{u.ID}, nil)
			if _, err := s.UserByID(ctx, u.ID); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestOpenLocked(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	_, err := Open(dir, s.log, nil)
	if !errors.Is(err, cache.ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "data_dir") {
		t.Fatalf("lock error does not name the directory and the fix: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	s2, err := Open(dir, s.log, nil)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s2.Close()
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var pb dto.Metric
	if err := c.Write(&pb); err != nil {
		t.Fatal(err)
	}
	return pb.GetCounter().GetValue()
}

// TestMain lets the test binary act as "another ldapgate" holding a store.
func TestMain(m *testing.M) {
	if dir := os.Getenv("CACHE_TEST_HOLD_STORE"); dir != "" {
		s, err := Open(dir, nil, nil)
		if err != nil {
			fmt.Println("open:", err)
			os.Exit(1)
		}
		fmt.Println("holding")
		io.Copy(io.Discard, os.Stdin) // until the parent closes our stdin
		s.Close()
		os.Exit(0)
	}
	if step := os.Getenv("CACHE_TEST_KILL_AT"); step != "" {
		killableMigration(os.Getenv("CACHE_TEST_DIR"), step)
		return
	}
	os.Exit(m.Run())
}

func TestOpenLockedByOtherProcess(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), "CACHE_TEST_HOLD_STORE="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "holding\n" {
		t.Fatalf("child: %q, %v", line, err)
	}
	if _, err := Open(dir, nil, nil); !errors.Is(err, cache.ErrLocked) {
		t.Fatalf("Open of a store held by another process: %v, want ErrLocked", err)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	s, err := Open(dir, nil, nil)
	if err != nil {
		t.Fatalf("Open after the other process exited: %v", err)
	}
	s.Close()
}

func TestBadgerLogsThroughSlog(t *testing.T) {
	var buf bytes.Buffer
	l := badgerLogger{slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	l.Infof("compaction %d done\n", 1)
	l.Debugf("noise")
	l.Warningf("disk %s slow\n", "sda")
	l.Errorf("broken")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want only the warning and the error, got %q", lines)
	}
	for i, want := range []string{`"level":"WARN","msg":"disk sda slow","source":"badger"`, `"level":"ERROR","msg":"broken","source":"badger"`} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d = %s, want %s", i, lines[i], want)
		}
	}
}
