package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/cache/badgerstore"
	"github.com/ldapgate/ldapgate/cache/pgstore"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/metrics"
)

// openStore opens the configured store backend (SPEC §12).
func openStore(ctx context.Context, cfg *config.Config, log *slog.Logger, m *metrics.Metrics) (cache.Backend, error) {
	if cfg.Store.Backend == config.StorePostgres {
		// A replica that cannot reach the database at start fails fast:
		// its supervisor restarts it, as with a locked data_dir.
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return pgstore.Open(octx, cfg.Store.Postgres.DSN.Reveal(), pgstore.Options{
			MaxConns: cfg.Store.Postgres.MaxConns, Log: log, Replica: cfg.ReplicaName, Metrics: m,
		})
	}
	s, err := badgerstore.Open(cfg.DataDir, log, m)
	if err != nil {
		return nil, err
	}
	return s.Backend(), nil
}
