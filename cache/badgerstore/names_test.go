package badgerstore

import (
	"context"
	"errors"
	"testing"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
)

// putTrusted writes u as a new user in one trusted Update and reports
// whether the transaction trusted the token on its last attempt.
func putTrusted(t *testing.T, s *Store, tok cache.NamesToken, u account.User, during func()) (trusted bool, err error) {
	t.Helper()
	attempts := 0
	err = s.Update(context.Background(), func(tx *Tx) error {
		attempts++
		var err error
		if trusted, err = tx.TrustNames(tok); err != nil {
			return err
		}
		c := u
		if err := tx.PutUser(&c); err != nil {
			return err
		}
		if during != nil && attempts == 1 {
			during() // another writer commits before this one does
		}
		return nil
	})
	return trusted, err
}

// The names a trusted transaction skips checking are exactly those no
// untrusted writer gave out since the token: each way one could slip in
// must end in ErrNameTaken / ErrUUIDTaken, never in two users sharing a
// name or a uuid.
func TestTrustedNames(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		// before runs after the token is taken and before the trusted
		// write; during runs inside the trusted transaction, before it
		// commits.
		before, during func(t *testing.T, s *Store)
		want           error
		trusted        bool // on the last attempt
	}{
		{name: "nothing changed: trusted, written", trusted: true},
		{name: "name given out before the write", want: cache.ErrNameTaken,
			before: func(t *testing.T, s *Store) { mustCreate(t, s, localUser("bob@example.com", "user")) }},
		{name: "uuid given out before the write", want: cache.ErrUUIDTaken,
			before: func(t *testing.T, s *Store) { mustCreate(t, s, ldapUser("robert@example.com", 1, "uuid-bob", "user")) }},
		{name: "name given out while the write runs", want: cache.ErrNameTaken,
			during: func(t *testing.T, s *Store) { mustCreate(t, s, localUser("bob@example.com", "user")) }},
		{name: "uuid given out while the write runs", want: cache.ErrUUIDTaken,
			during: func(t *testing.T, s *Store) { mustCreate(t, s, ldapUser("robert@example.com", 1, "uuid-bob", "user")) }},
		{name: "an unrelated name given out: untrusted, still written",
			before: func(t *testing.T, s *Store) { mustCreate(t, s, localUser("carol@example.com", "user")) }},
		{name: "another trusted turn ended since the token",
			before: func(t *testing.T, s *Store) {
				end, ok := s.TrustNames()
				if !ok {
					t.Fatal("no turn")
				}
				end()
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, "")
			tok, err := s.NamesToken(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if tc.before != nil {
				tc.before(t, s)
			}
			end, ok := s.TrustNames()
			if !ok {
				t.Fatal("TrustNames: no turn")
			}
			defer end()
			var during func()
			if tc.during != nil {
				during = func() { tc.during(t, s) }
			}
			trusted, err := putTrusted(t, s, tok, ldapUser("bob@example.com", 1, "uuid-bob", "user"), during)
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("trusted put: %v, want %v", err, tc.want)
			}
			if trusted != tc.trusted {
				t.Errorf("trusted = %v, want %v", trusted, tc.trusted)
			}
			// Whatever happened, one name and one uuid point at one user.
			byName, nerr := s.UserByName(ctx, "bob@example.com")
			byUUID, uerr := s.UserByUUID(ctx, 1, "uuid-bob")
			if nerr == nil && uerr == nil && byName.ID != byUUID.ID && byName.LDAPUUID == "uuid-bob" {
				t.Errorf("name and uuid lead to different users: %+v / %+v", byName, byUUID)
			}
			if nerr == nil && byName.Source == account.SourceLDAP && byName.LDAPUUID != "uuid-bob" {
				t.Errorf("name index points at %+v", byName)
			}
		})
	}
}

// Untrusted name writes move the token; trusted ones do not (or the
// pipelined batches of one sync would conflict with each other), and only
// one turn of trusted writes runs at a time.
func TestNamesTokenMoves(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	t0, err := s.NamesToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	end, ok := s.TrustNames()
	if !ok {
		t.Fatal("no turn")
	}
	if _, again := s.TrustNames(); again {
		t.Fatal("a second turn while one runs")
	}
	if trusted, err := putTrusted(t, s, t0, ldapUser("a@example.com", 1, "uuid-a", "user"), nil); err != nil || !trusted {
		t.Fatalf("trusted put: %v %v", trusted, err)
	}
	if t1, _ := s.NamesToken(ctx); t1 != t0 {
		t.Errorf("a trusted write moved the token: %+v -> %+v", t0, t1)
	}
	end()
	if t2, _ := s.NamesToken(ctx); t2 == t0 {
		t.Error("the end of a turn did not move the token")
	}
	t3, _ := s.NamesToken(ctx)
	u := mustCreate(t, s, localUser("b@example.com", "user"))
	t4, _ := s.NamesToken(ctx)
	if t4 == t3 {
		t.Error("an untrusted new name did not move the token")
	}
	// A write that gives out no name (same name, same uuid) leaves it.
	if err := s.Update(ctx, func(tx *Tx) error {
		u.Role = "admin"
		return tx.PutUser(&u)
	}); err != nil {
		t.Fatal(err)
	}
	if t5, _ := s.NamesToken(ctx); t5 != t4 {
		t.Error("a write that gave out no name moved the token")
	}
}

// The version key holds whatever bytes it holds: a value this code would
// not write (a damaged or hand-edited store) neither fails a sync nor
// lets a stale token through; the next untrusted name write replaces it.
func TestNamesVersionAnyValue(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	if err := s.Update(ctx, func(tx *Tx) error { return tx.set([]byte(keyNamesVersion), []byte("odd")) }); err != nil {
		t.Fatal(err)
	}
	tok, err := s.NamesToken(ctx)
	if err != nil {
		t.Fatalf("token over an odd version: %v", err)
	}
	end, ok := s.TrustNames()
	if !ok {
		t.Fatal("no turn")
	}
	defer end()
	if trusted, err := putTrusted(t, s, tok, ldapUser("a@example.com", 1, "uuid-a", "user"), nil); err != nil || !trusted {
		t.Fatalf("nothing changed since the token: trusted %v, %v", trusted, err)
	}
	mustCreate(t, s, localUser("b@example.com", "user"))
	if trusted, err := putTrusted(t, s, tok, ldapUser("c@example.com", 1, "uuid-c", "user"), nil); err != nil || trusted {
		t.Fatalf("a name given out since the token: trusted %v, %v", trusted, err)
	}
}
