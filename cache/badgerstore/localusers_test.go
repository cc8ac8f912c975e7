package badgerstore

import (
	"context"
	"crypto/sha256"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/ldapgate/ldapgate/cache"
)

// A local user the config file no longer names is deleted with their
// sessions; users the file never named (created through the API), and a
// name a directory took over (rule 4), are not touched.
func TestPruneConfigLocalUsers(t *testing.T) {
	ctx := context.Background()
	hash := func(tok string) [32]byte { return sha256.Sum256([]byte(tok)) }
	s := openTest(t, "")
	root := mustCreate(t, s, localUser("root@local", "admin"))
	ops := mustCreate(t, s, localUser("ops@local", "user"))
	mustCreate(t, s, localUser("api@local", "user"))
	mustCreate(t, s, ldapUser("was-local@example.com", 1, "uuid-w", "user"))
	now := time.Now()
	if err := s.PutSession(ctx, cache.Session{TokenHash: hash("ops"), UserID: ops.ID, CreatedAt: now,
		ExpiresAt: now.Add(time.Hour), LastSeen: now}); err != nil {
		t.Fatal(err)
	}

	gone, err := s.PruneConfigLocalUsers(ctx, []string{"ROOT@local", "ops@local", "was-local@example.com", "ghost@local"})
	if err != nil || len(gone) != 0 {
		t.Fatalf("first record: %v %v", gone, err)
	}
	gone, err = s.PruneConfigLocalUsers(ctx, []string{"root@local"})
	if err != nil || !slices.Equal(gone, []string{"ops@local"}) {
		t.Fatalf("prune: %v %v, want ops@local deleted", gone, err)
	}
	if _, err := s.UserByName(ctx, "ops@local"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("ops@local after prune: %v", err)
	}
	if _, err := s.SessionByHash(ctx, hash("ops")); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("ops@local's session after prune: %v", err)
	}
	for _, name := range []string{"root@local", "api@local", "was-local@example.com"} {
		if _, err := s.UserByName(ctx, name); err != nil {
			t.Errorf("%s after prune: %v", name, err)
		}
	}
	if u, _ := s.UserByName(ctx, "root@local"); u.ID != root.ID {
		t.Errorf("root@local replaced: %+v", u)
	}
	// Nothing more to remove; an empty file removes the rest it named.
	if gone, err = s.PruneConfigLocalUsers(ctx, []string{"root@local"}); err != nil || len(gone) != 0 {
		t.Errorf("again: %v %v", gone, err)
	}
	if gone, err = s.PruneConfigLocalUsers(ctx, nil); err != nil || !slices.Equal(gone, []string{"root@local"}) {
		t.Errorf("empty list: %v %v", gone, err)
	}
	if _, err := s.UserByName(ctx, "api@local"); err != nil {
		t.Errorf("api@local: %v", err)
	}
}

// A stored list that does not decode deletes nobody and is replaced: a
// damaged key must not stop ldapgate from starting.
func TestPruneConfigLocalUsersDamagedList(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	mustCreate(t, s, localUser("ops@local", "user"))
	mustCreate(t, s, localUser("root@local", "admin"))
	if err := s.Update(ctx, func(tx *Tx) error { return tx.set([]byte(keyConfigLocalUsers), []byte("{not json")) }); err != nil {
		t.Fatal(err)
	}
	if gone, err := s.PruneConfigLocalUsers(ctx, []string{"root@local"}); err != nil || len(gone) != 0 {
		t.Fatalf("over a damaged list: %v %v", gone, err)
	}
	if _, err := s.UserByName(ctx, "ops@local"); err != nil {
		t.Errorf("ops@local: %v", err)
	}
	// Replaced by the list given: root@local, which an empty file removes.
	if gone, err := s.PruneConfigLocalUsers(ctx, nil); err != nil || !slices.Equal(gone, []string{"root@local"}) {
		t.Errorf("the list was not replaced: %v %v", gone, err)
	}
}
