package pgstore_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/cache/pgstore"
	"github.com/ldapgate/ldapgate/cache/storetest"
	"github.com/ldapgate/ldapgate/internal/pgtest"
)

var quiet = slog.New(slog.NewJSONHandler(io.Discard, nil))

func open(t testing.TB, dsn string) *pgstore.Store {
	t.Helper()
	s, err := pgstore.Open(context.Background(), dsn, pgstore.Options{Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestBackendConformance runs the store contract's suite on PostgreSQL.
func TestBackendConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) cache.Backend { return open(t, pgtest.DSN(t)) })
}

// TestSchemaNewerRefused: a replica never runs on a schema a newer
// ldapgate migrated (SPEC §12), and a second start migrates nothing.
func TestSchemaNewerRefused(t *testing.T) {
	dsn := pgtest.DSN(t)
	s := open(t, dsn)
	open(t, dsn) // the same version again: fine
	if _, err := s.Pool().Exec(context.Background(), `UPDATE ldapgate_schema SET version = version + 1`); err != nil {
		t.Fatal(err)
	}
	_, err := pgstore.Open(context.Background(), dsn, pgstore.Options{Log: quiet})
	if !errors.Is(err, cache.ErrNewerLayout) {
		t.Fatalf("Open on a newer schema: %v, want ErrNewerLayout", err)
	}
}
