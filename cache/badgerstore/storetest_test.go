package badgerstore_test

import (
	"io"
	"log/slog"
	"testing"

	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/cache/badgerstore"
	"github.com/ldapgate/ldapgate/cache/storetest"
)

// TestBackendConformance runs the store contract's suite on badger.
func TestBackendConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) cache.Backend {
		s, err := badgerstore.Open(t.TempDir(), slog.New(slog.NewJSONHandler(io.Discard, nil)), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s.Backend()
	})
}
