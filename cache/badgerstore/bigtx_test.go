package badgerstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/ldapgate/ldapgate/cache"
)

// bigN users renamed with an audit entry each need ~4 keys per user: far
// past one badger transaction of a store opened by openSmall (3,276 keys),
// and more than one apply batch. (With the real 32 MiB memtable the limit
// is 50,000 keys; the mechanism is the same, the tests just run faster.)
const bigN = 2000

// openSmall opens a store with a 2 MiB memtable: one transaction holds
// 15% of it.
func openSmall(t *testing.T, dir string) *Store {
	t.Helper()
	saved := memTableSize
	memTableSize = 2 << 20
	defer func() { memTableSize = saved }()
	return openTest(t, dir)
}

func bigName(i int, suffix string) string { return fmt.Sprintf("user%06d@%s", i, suffix) }

func seedBig(t *testing.T, s *Store) uint64 {
	t.Helper()
	ctx := context.Background()
	for lo := 0; lo < bigN; lo += 200 {
		err := s.Update(ctx, func(tx *Tx) error {
			for i := lo; i < lo+200; i++ {
				u := ldapUser(bigName(i, "mail.example"), 9, fmt.Sprint(i), "user")
				if err := tx.PutUser(&u); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	r, err := s.CreateRun(ctx, cache.Run{DirectoryID: 9, Trigger: "migrate"})
	if err != nil {
		t.Fatal(err)
	}
	if s.db.Opts().MemTableSize != 2<<20 {
		t.Fatal("not a small store")
	}
	return r.ID
}

// migrateAll renames every user of directory 9 and switches its naming,
// in one Update, as the syncer's migration does.
func migrateAll(s *Store, runID uint64, failAt int) error {
	return s.Update(context.Background(), func(tx *Tx) error {
		for i := 0; i < bigN; i++ {
			if i == failAt {
				return errFailAt
			}
			u, err := tx.UserByName(bigName(i, "mail.example"))
			if err != nil {
				return err
			}
			u.Username = bigName(i, "example.com")
			if err := tx.PutUser(&u); err != nil {
				return err
			}
			if err := tx.AddAudit(runID, cache.AuditEntry{Action: "update", UserID: u.ID, Username: u.Username}); err != nil {
				return err
			}
		}
		return tx.SetNamingOverride(9, "username_at_domain")
	})
}

var errFailAt = errors.New("planned failure")

// checkMigrated asserts all-or-nothing: every user under its new name, or
// every user under its old one, with the override and audit to match.
func checkMigrated(t *testing.T, s *Store, runID uint64, want bool) {
	t.Helper()
	ctx := context.Background()
	suffix, gone := "mail.example", "example.com"
	if want {
		suffix, gone = gone, suffix
	}
	us, err := s.UsersOfDirectory(ctx, 9)
	if err != nil || len(us) != bigN {
		t.Fatalf("UsersOfDirectory: %d, %v", len(us), err)
	}
	for i, u := range us {
		if u.Username != bigName(i, suffix) {
			t.Fatalf("user %d is %q, want %q (migrated=%v)", i, u.Username, bigName(i, suffix), want)
		}
	}
	for _, i := range []int{0, bigN / 2, bigN - 1} {
		if _, err := s.UserByName(ctx, bigName(i, gone)); !errors.Is(err, cache.ErrNotFound) {
			t.Fatalf("name %q still resolves: %v", bigName(i, gone), err)
		}
		if u, err := s.UserByName(ctx, bigName(i, suffix)); err != nil || u.ID != us[i].ID {
			t.Fatalf("name %q: %+v %v", bigName(i, suffix), u, err)
		}
	}
	naming, _ := s.NamingOverride(ctx, 9)
	changes, _ := s.RunChanges(ctx, runID)
	if (naming != "") != want || (len(changes) == bigN) != want || (!want && len(changes) != 0) {
		t.Fatalf("naming %q, %d audit entries (migrated=%v)", naming, len(changes), want)
	}
	if want && changes[bigN-1].Seq != bigN {
		t.Fatalf("last audit seq %d", changes[bigN-1].Seq)
	}
	journal := 0
	txn := s.db.NewTransaction(false)
	iterate(ctx, txn, []byte(pJournal), func(_, _ []byte) error { journal++; return nil })
	txn.Discard()
	if journal != 0 {
		t.Fatalf("%d journal entries left", journal)
	}
}

func TestBigTransaction(t *testing.T) {
	s := openSmall(t, "")
	runID := seedBig(t, s)

	// Refused half way (as a name clash would): nothing changes.
	if err := migrateAll(s, runID, bigN-10); !errors.Is(err, errFailAt) {
		t.Fatalf("failing migration: %v", err)
	}
	checkMigrated(t, s, runID, false)

	steps := map[string]int{}
	testHookBigCommit = func(step string) error { steps[step]++; return nil }
	err := migrateAll(s, runID, -1)
	testHookBigCommit = nil
	if err != nil {
		t.Fatalf("migration: %v", err)
	}
	if steps["journal"] != 1 || steps["applied-batch"] < 2 {
		t.Fatalf("commit steps %v: want the big path with several apply batches", steps)
	}
	checkMigrated(t, s, runID, true)

	// The store takes ordinary writes afterwards.
	mustCreate(t, s, localUser("after@local", "user"))
}

func TestBigTransactionCrash(t *testing.T) {
	tests := []struct {
		step     string
		migrated bool
	}{
		{"journal", false},      // crash before the commit point
		{"marked", true},        // committed, nothing applied yet
		{"applied-batch", true}, // committed, first batch applied
	}
	for _, tc := range tests {
		t.Run(tc.step, func(t *testing.T) {
			dir := t.TempDir()
			s := openSmall(t, dir)
			runID := seedBig(t, s)
			crash := errors.New("crash at " + tc.step)
			testHookBigCommit = func(step string) error {
				if step == tc.step {
					return crash
				}
				return nil
			}
			err := migrateAll(s, runID, -1)
			testHookBigCommit = nil
			if !errors.Is(err, crash) {
				t.Fatalf("migration: %v, want the crash", err)
			}
			if tc.migrated {
				// A committed but unapplied journal: no more writes until
				// a restart finishes it.
				if _, err := s.CreateUser(context.Background(), localUser("x@local", "user")); err == nil {
					t.Fatal("write accepted while a committed journal is unapplied")
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openSmall(t, dir)
			checkMigrated(t, s, runID, tc.migrated)
			mustCreate(t, s, localUser("after@local", "user"))
		})
	}
}

// Writers that read a user before a big transaction and commit after it
// conflict and retry instead of undoing it.
func TestBigTransactionConflicts(t *testing.T) {
	ctx := context.Background()
	s := openSmall(t, "")
	runID := seedBig(t, s)
	first, _ := s.UserByName(ctx, bigName(0, "mail.example"))
	attempts := 0
	err := s.Update(ctx, func(tx *Tx) error {
		attempts++
		u, err := tx.UserByID(first.ID)
		if err != nil {
			return err
		}
		if attempts == 1 {
			if err := migrateAll(s, runID, -1); err != nil {
				return err
			}
		}
		u.Role = "admin"
		return tx.PutUser(&u)
	})
	if err != nil || attempts != 2 {
		t.Fatalf("update around a big transaction: %v after %d attempts", err, attempts)
	}
	got, _ := s.UserByID(ctx, first.ID)
	if got.Username != bigName(0, "example.com") || got.Role != "admin" {
		t.Fatalf("user after both: %+v", got)
	}
}

// killableMigration (run in a child process by TestBigTransactionKill9)
// seeds a store, then migrates it, announcing step on stdout and then
// hanging there until the parent kills it with SIGKILL.
func killableMigration(dir, step string) {
	memTableSize = 2 << 20
	s, err := Open(dir, nil, nil)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	ctx := context.Background()
	for lo := 0; lo < bigN; lo += 200 {
		err := s.Update(ctx, func(tx *Tx) error {
			for i := lo; i < lo+200; i++ {
				u := ldapUser(bigName(i, "mail.example"), 9, fmt.Sprint(i), "user")
				if err := tx.PutUser(&u); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			fmt.Println("seed:", err)
			os.Exit(1)
		}
	}
	r, err := s.CreateRun(ctx, cache.Run{DirectoryID: 9})
	if err != nil {
		fmt.Println("run:", err)
		os.Exit(1)
	}
	testHookBigCommit = func(at string) error {
		if at == step {
			fmt.Printf("at %s run %d\n", at, r.ID)
			select {} // wait for SIGKILL
		}
		return nil
	}
	migrateAll(s, r.ID, -1)
	fmt.Println("finished without reaching", step)
	os.Exit(1)
}

// A real kill -9 at each step of a big commit: after a restart the store
// holds all of the transaction or none of it.
func TestBigTransactionKill9(t *testing.T) {
	tests := []struct {
		step     string
		migrated bool
	}{
		{"journal", false},
		{"marked", true},
		{"applied-batch", true},
	}
	for _, tc := range tests {
		t.Run(tc.step, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run", "^$")
			cmd.Env = append(os.Environ(), "CACHE_TEST_KILL_AT="+tc.step, "CACHE_TEST_DIR="+dir)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(out).ReadString('\n')
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
			var runID uint64
			if _, serr := fmt.Sscanf(line, "at "+tc.step+" run %d\n", &runID); err != nil || serr != nil {
				t.Fatalf("child said %q (%v)", line, err)
			}
			s := openSmall(t, dir)
			checkMigrated(t, s, runID, tc.migrated)
			mustCreate(t, s, localUser("after@local", "user"))
		})
	}
}
