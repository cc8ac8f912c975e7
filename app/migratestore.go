package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/ldapgate/ldapgate/cache/badgerstore"
	"github.com/ldapgate/ldapgate/cache/pgstore"
	"github.com/ldapgate/ldapgate/config"
)

// MigrateStore copies the badger store in dir into the PostgreSQL store
// of cfg (store.postgres; SPEC §12 migrate-store), which must be empty.
// Every ldapgate on either store must be stopped meanwhile: the badger
// store is opened exclusively, and replicas started on the new store only
// after the copy see all of it. Sessions are not copied (users log in
// again); out says so.
func MigrateStore(ctx context.Context, cfg *config.Config, dir string, out io.Writer, log *slog.Logger) error {
	if cfg.Store.Postgres.DSNFile == "" {
		return errors.New("migrate-store: the config has no store.postgres.dsn_file to copy into")
	}
	src, err := badgerstore.Open(dir, log, nil)
	if err != nil {
		return fmt.Errorf("migrate-store: open %s: %w", dir, err)
	}
	defer src.Close()
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	dst, err := pgstore.Open(octx, cfg.Store.Postgres.DSN.Reveal(), pgstore.Options{MaxConns: 2, Log: log})
	if err != nil {
		return fmt.Errorf("migrate-store: %w", err)
	}
	defer dst.Close()
	rep, err := dst.Import(ctx, src.Backend().(pgstore.ImportSource))
	if err != nil {
		return fmt.Errorf("migrate-store: nothing copied: %w", err)
	}
	fmt.Fprintf(out, "copied %d users, %d API directories, %d runs (%d audit entries) from %s into PostgreSQL\n",
		rep.Users, rep.Directories, rep.Runs, rep.AuditEntries, dir)
	if rep.SessionsDropped > 0 {
		fmt.Fprintf(out, "%d sessions were not copied: their users log in again\n", rep.SessionsDropped)
	}
	return nil
}
