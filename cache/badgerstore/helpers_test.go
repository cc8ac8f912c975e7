package badgerstore

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/metrics"
)

func openTest(t testing.TB, dir string) *Store {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	s, err := Open(dir, slog.New(slog.NewJSONHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openTestMetrics(t testing.TB) (*Store, *metrics.Metrics) {
	t.Helper()
	m := metrics.New()
	s, err := Open(t.TempDir(), slog.New(slog.NewJSONHandler(io.Discard, nil)), m)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, m
}

func ldapUser(name string, dir uint64, uuid, role string) account.User {
	return account.User{
		Username: name, Email: name, Role: role, State: account.StateActive,
		Source: account.SourceLDAP, DirectoryID: dir, LDAPUUID: uuid,
		LDAPDN: "uid=" + name + ",ou=users,dc=example,dc=com", Groups: []string{"staff"},
	}
}

func localUser(name, role string) account.User {
	return account.User{
		Username: name, Role: role, State: account.StateActive,
		Source: account.SourceLocal, PasswordHash: "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
	}
}

func mustCreate(t testing.TB, s *Store, u account.User) account.User {
	t.Helper()
	out, err := s.CreateUser(context.Background(), u)
	if err != nil {
		t.Fatalf("CreateUser(%q): %v", u.Username, err)
	}
	return out
}
