package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
)

// seedLayout writes a store at layout version (1: no version key, as
// ldapgate up to eeaaaf9 wrote them) with what seed puts in it. seed runs
// on a store opened by this code: the test of a future step writes the
// previous layout's records with raw keys (tx.set) where the encodings
// differ.
func seedLayout(t *testing.T, dir string, version int, seed func(s *Store)) {
	t.Helper()
	s, err := Open(dir, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if seed != nil {
		seed(s)
	}
	err = s.db.Update(func(txn *badger.Txn) error {
		if version == 1 {
			return txn.Delete([]byte(keyLayout))
		}
		return txn.Set([]byte(keyLayout), []byte(strconv.Itoa(version)))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// withLayoutSteps adds steps after the real ones for the test's duration.
func withLayoutSteps(t *testing.T, steps ...layoutStep) {
	t.Helper()
	saved := layoutSteps
	layoutSteps = append(append([]layoutStep(nil), saved...), steps...)
	t.Cleanup(func() { layoutSteps = saved })
}

// openLogged opens dir and returns the store (or the error) and its log.
func openLogged(t *testing.T, dir string) (*Store, *strings.Builder, error) {
	t.Helper()
	var logs strings.Builder
	s, err := Open(dir, slog.New(slog.NewJSONHandler(&logs, nil)), nil)
	if err == nil {
		t.Cleanup(func() { s.Close() })
	}
	return s, &logs, err
}

func storedLayout(t *testing.T, s *Store) string {
	t.Helper()
	var v string
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(keyLayout))
		if errors.Is(err, badger.ErrKeyNotFound) {
			v = "(none)"
			return nil
		}
		if err != nil {
			return err
		}
		b, err := item.ValueCopy(nil)
		v = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestLayoutNewStoreGetsCurrent(t *testing.T) {
	dir := t.TempDir()
	s, logs, err := openLogged(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := storedLayout(t, s); got != strconv.Itoa(layoutCurrent()) {
		t.Fatalf("new store's layout = %s, want %d", got, layoutCurrent())
	}
	if strings.Contains(logs.String(), "store layout migrated") {
		t.Fatalf("an empty data dir was taken for an old store:\n%s", logs)
	}
	s.Close()
	if _, logs, err = openLogged(t, dir); err != nil || strings.Contains(logs.String(), "migrated") {
		t.Fatalf("second open: %v\n%s", err, logs)
	}
}

// TestLayoutOldStoreMigratedOnce: a store without the version key (the
// release's) keeps its records, is migrated and logged once.
func TestLayoutOldStoreMigratedOnce(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var alice uint64
	seedLayout(t, dir, 1, func(s *Store) {
		alice = mustCreate(t, s, ldapUser("alice@example.com", 1, "u-1", "admin")).ID
	})
	s, logs, err := openLogged(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := storedLayout(t, s); got != strconv.Itoa(layoutCurrent()) {
		t.Fatalf("layout after migration = %s, want %d", got, layoutCurrent())
	}
	if n := strings.Count(logs.String(), `"msg":"store layout migrated"`); n != layoutCurrent()-1 {
		t.Fatalf("%d migration log lines, want %d:\n%s", n, layoutCurrent()-1, logs)
	}
	if !strings.Contains(logs.String(), `"from":1,"to":2`) {
		t.Fatalf("no 1→2 line:\n%s", logs)
	}
	if u, err := s.UserByID(ctx, alice); err != nil || u.Username != "alice@example.com" || u.Role != "admin" {
		t.Fatalf("alice after migration: %+v %v", u, err)
	}
	s.Close()
	if _, logs, err = openLogged(t, dir); err != nil || strings.Contains(logs.String(), "migrated") {
		t.Fatalf("second open migrated again: %v\n%s", err, logs)
	}
}

// TestLayoutNewerRefused: an older binary neither opens nor writes into a
// store a newer one has migrated.
func TestLayoutNewerRefused(t *testing.T) {
	dir := t.TempDir()
	newer := layoutCurrent() + 1
	seedLayout(t, dir, newer, func(s *Store) { mustCreate(t, s, localUser("ops@local", "admin")) })
	before := rawKeys(t, dir)
	_, _, err := openLogged(t, dir)
	if !errors.Is(err, cache.ErrNewerLayout) {
		t.Fatalf("Open of a layout %d store: %v, want ErrNewerLayout", newer, err)
	}
	for _, want := range []string{fmt.Sprintf("(layout %d)", newer), fmt.Sprintf("knows up to layout %d", layoutCurrent())} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q lacks %q", err, want)
		}
	}
	if after := rawKeys(t, dir); after != before {
		t.Fatalf("the refused store was changed:\nbefore %s\nafter  %s", before, after)
	}
}

// rawKeys lists the keys and values of the store at dir, read with badger
// alone.
func rawKeys(t *testing.T, dir string) string {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var b strings.Builder
	err = db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, "%q=%q ", it.Item().Key(), v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestLayoutFailedStepRetried: a step is all or nothing with its version;
// after a failure the store stays at the previous layout, the next open
// runs the step again, and a later open runs nothing.
func TestLayoutFailedStepRetried(t *testing.T) {
	dir := t.TempDir()
	from := layoutCurrent()
	runs, fail := 0, true
	withLayoutSteps(t, layoutStep{from: from, name: "test step", fn: func(tx *Tx) (string, error) {
		runs++
		if err := tx.set([]byte("test/marker"), []byte("x")); err != nil {
			return "", err
		}
		if fail {
			return "", errors.New("disk on fire")
		}
		return "marker written", nil
	}})
	seedLayout(t, dir, from, nil)

	_, _, err := openLogged(t, dir)
	if err == nil || !strings.Contains(err.Error(), "disk on fire") ||
		!strings.Contains(err.Error(), fmt.Sprintf("layout %d to %d (test step)", from, from+1)) {
		t.Fatalf("Open with a failing step: %v", err)
	}
	if keys := rawKeys(t, dir); !strings.Contains(keys, fmt.Sprintf(`"meta/layout"="%d"`, from)) || strings.Contains(keys, "test/marker") {
		t.Fatalf("a failed step left its writes or moved the version: %s", keys)
	}

	fail = false
	s, logs, err := openLogged(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := storedLayout(t, s); got != strconv.Itoa(from+1) || runs != 2 {
		t.Fatalf("after the retry: layout %s, step ran %d times", got, runs)
	}
	if !strings.Contains(logs.String(), fmt.Sprintf(`"from":%d,"to":%d,"step":"test step","did":"marker written"`, from, from+1)) {
		t.Fatalf("no log of the step:\n%s", logs)
	}
	s.Close()
	if _, _, err := openLogged(t, dir); err != nil || runs != 2 {
		t.Fatalf("third open: %v, step ran %d times", err, runs)
	}
}

// TestLayoutStepsInOrder: a layout 1 store passes every step once, in order.
func TestLayoutStepsInOrder(t *testing.T) {
	dir := t.TempDir()
	var order []int
	withLayoutSteps(t, layoutStep{from: layoutCurrent(), name: "test step", fn: func(tx *Tx) (string, error) {
		v, err := tx.get([]byte(keyLayout))
		order = append(order, len(order))
		return "saw layout " + string(v), err
	}})
	seedLayout(t, dir, 1, nil)
	s, logs, err := openLogged(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`"did":"saw layout %d"`, layoutCurrent()-1)
	if len(order) != 1 || !strings.Contains(logs.String(), want) || storedLayout(t, s) != strconv.Itoa(layoutCurrent()) {
		t.Fatalf("steps: ran %v, layout %s, log lacks %s:\n%s", order, storedLayout(t, s), want, logs)
	}
}

// TestLayoutBigStep: a step rewriting more than one badger transaction
// holds commits through the journal, with its version.
func TestLayoutBigStep(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openSmall(t, dir)
	seedBig(t, s)
	from := layoutCurrent()
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(keyLayout), []byte(strconv.Itoa(from))) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	withLayoutSteps(t, layoutStep{from: from, name: "rename everyone", fn: func(tx *Tx) (string, error) {
		n := 0
		for _, k := range tx.keys([]byte(pUser)) {
			u, err := tx.UserByID(suffixID(k))
			if err != nil {
				return "", err
			}
			u.DisplayName = "migrated"
			if err := tx.PutUser(&u); err != nil {
				return "", err
			}
			n++
		}
		return fmt.Sprintf("%d users", n), nil
	}})
	saved := memTableSize
	memTableSize = 2 << 20
	s, logs, err := openLogged(t, dir)
	memTableSize = saved
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "committed a transaction too big") || !strings.Contains(logs.String(), fmt.Sprintf(`"did":"%d users"`, bigN)) {
		t.Fatalf("not a big step:\n%s", logs)
	}
	if got := storedLayout(t, s); got != strconv.Itoa(from+1) {
		t.Fatalf("layout after a big step = %s", got)
	}
	u, err := s.UserByName(ctx, bigName(bigN-1, "mail.example"))
	if err != nil || u.DisplayName != "migrated" {
		t.Fatalf("last user after the big step: %+v %v", u, err)
	}
}

// TestLayoutStepsNumbered: step i migrates layout i+1, each named, so a
// step added out of place or twice fails here rather than on a user's
// store.
func TestLayoutStepsNumbered(t *testing.T) {
	for i, st := range layoutSteps {
		if st.from != i+1 || st.name == "" || st.fn == nil {
			t.Errorf("layoutSteps[%d] = {from %d, name %q}: want from %d, a name and a func", i, st.from, st.name, i+1)
		}
	}
}

// TestLayoutUnreadableRefused: a version this code cannot parse is not
// guessed at.
func TestLayoutUnreadableRefused(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(keyLayout), []byte("two")) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, _, err := openLogged(t, dir); err == nil || !strings.Contains(err.Error(), `unreadable layout version "two"`) {
		t.Fatalf("Open with an unreadable version: %v", err)
	}
}

// encodeUserV1 is a user record as layout 2 (codec version 1) wrote it:
// the version 2 form of a user without ldap_status, minus that field.
func encodeUserV1(t *testing.T, u account.User) []byte {
	t.Helper()
	u.LDAPStatus = ""
	b, err := encodeUser(&u)
	if err != nil {
		t.Fatal(err)
	}
	if b[len(b)-1] != 0 {
		t.Fatalf("version 2 record does not end with an empty ldap_status: % x", b)
	}
	b = b[:len(b)-1]
	b[0] = userCodecV1
	return b
}

// TestLayoutStep2LDAPStatus: a layout 2 store with version 1 user records
// opens at layout 3; its users read back whole with an empty ldap_status,
// and from then on ldap_status is kept across writes and reopens.
func TestLayoutStep2LDAPStatus(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var alice, carol account.User
	seedLayout(t, dir, 2, func(s *Store) {
		alice = mustCreate(t, s, ldapUser("alice@example.com", 1, "u-1", "admin"))
		c := ldapUser("carol@example.com", 1, "u-3", "user")
		c.State = account.StateBlockedInLDAP
		carol = mustCreate(t, s, c)
		err := s.db.Update(func(txn *badger.Txn) error {
			for _, u := range []account.User{alice, carol} {
				if err := txn.Set(userKey(u.ID), encodeUserV1(t, u)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	s, logs, err := openLogged(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := storedLayout(t, s); got != "3" {
		t.Fatalf("layout after migration = %s, want 3", got)
	}
	if !strings.Contains(logs.String(), `"from":2,"to":3,"step":"user records carry ldap_status"`) {
		t.Fatalf("no 2→3 line:\n%s", logs)
	}
	for _, want := range []account.User{alice, carol} {
		got, err := s.UserByID(ctx, want.ID)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
			t.Fatalf("version 1 record after migration:\n got %#v\nwant %#v", got, want)
		}
	}
	if _, err := s.UpdateUser(ctx, carol.ID, func(u *account.User) error {
		u.LDAPStatus = account.LDAPStatusExpired
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// ldap_status belongs to blocked_in_ldap only: written on an active
	// user, it is dropped.
	if _, err := s.UpdateUser(ctx, alice.ID, func(u *account.User) error {
		u.LDAPStatus = account.LDAPStatusDisabled
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, _, err = openLogged(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	if u, err := s.UserByID(ctx, carol.ID); err != nil || u.LDAPStatus != account.LDAPStatusExpired {
		t.Fatalf("carol after reopen: %+v %v", u, err)
	}
	if u, err := s.UserByID(ctx, alice.ID); err != nil || u.LDAPStatus != "" {
		t.Fatalf("alice after reopen: %+v %v", u, err)
	}
}
