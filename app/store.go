package app

import (
	"context"
	"log/slog"

	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/metrics"
)

// openStore opens the configured store backend (SPEC §12).
func openStore(_ context.Context, cfg *config.Config, log *slog.Logger, m *metrics.Metrics) (cache.Backend, error) {
	s, err := cache.Open(cfg.DataDir, log, m)
	if err != nil {
		return nil, err
	}
	return s.Backend(), nil
}
