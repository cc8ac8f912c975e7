package app

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/api"
	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/directory"
	"github.com/ldapgate/ldapgate/metrics"
	"github.com/ldapgate/ldapgate/syncer"
)

// Directories owns the live directory set: the file's directories (stable
// ids from the store) and the API-created ones (persisted in the store). It
// is the only writer of the set; the syncer and the login path only read it.
type Directories struct {
	store cache.Backend
	set   *directory.Set
	log   *slog.Logger
	m     *metrics.Metrics

	mu     sync.Mutex // serialises changes to the set
	roles  []string
	syncer *syncer.Syncer
}

func newDirectories(store cache.Backend, log *slog.Logger, m *metrics.Metrics) *Directories {
	return &Directories{store: store, set: directory.NewSet(), log: log, m: m}
}

// Set is the live set.
func (d *Directories) Set() *directory.Set { return d.set }

// Load (re)builds the set from cfg and the store. Clients of directories
// whose settings did not change are kept (their pools stay warm); others
// are opened anew and the replaced ones closed.
func (d *Directories) Load(ctx context.Context, cfg *config.Config) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.roles = cfg.Roles
	var want []config.Directory
	for _, dc := range cfg.Directories {
		id, err := d.store.DirectoryIDForName(ctx, dc.Name)
		if err != nil {
			return fmt.Errorf("directory %q: %w", dc.Name, err)
		}
		dc.ID = id
		dc.Managed = config.ManagedConfig
		fileNaming := dc.Naming
		if err := d.applyNamingOverride(ctx, &dc); err != nil {
			return err
		}
		if dc.Naming != fileNaming {
			// SPEC §7: a migration done through the API outlives the file.
			d.log.Warn("directory was migrated to username@domain names; the config file still says naming: "+fileNaming+"; update the file",
				"directory", dc.Name)
		}
		want = append(want, dc)
	}
	apiDirs, err := d.store.Directories(ctx)
	if err != nil {
		return fmt.Errorf("loading API directories: %w", err)
	}
	for _, dc := range apiDirs {
		dc.ApplyDefaults()
		dc.Managed = config.ManagedAPI
		if err := d.applyNamingOverride(ctx, &dc); err != nil {
			return err
		}
		want = append(want, dc)
	}
	if err := d.install(want); err != nil {
		return err
	}
	return d.blockOrphans(ctx)
}

// applyNamingOverride sets dc.Naming to what a migration recorded in the
// store, if anything: the store, not the file or the saved settings, knows
// a directory was migrated.
func (d *Directories) applyNamingOverride(ctx context.Context, dc *config.Directory) error {
	naming, err := d.store.NamingOverride(ctx, dc.ID)
	if err != nil {
		return fmt.Errorf("directory %q: %w", dc.Name, err)
	}
	if naming != "" {
		dc.Naming = naming
	}
	return nil
}

// blockOrphans applies rule 9 to directories that are gone without an API
// delete — dropped from the config file (or renamed: a new name is a new
// directory): their users still active are blocked directory_removed and
// their sessions end, as deleting the synchronization settings does in the
// platform guide. If a directory of the same login domain takes over, its
// next sync adopts those users by name (syncer: directory_removed users are
// free to claim), so a rename in the file costs a sync, not the accounts.
func (d *Directories) blockOrphans(ctx context.Context) error {
	counts, err := d.store.CountUsers(ctx)
	if err != nil {
		return fmt.Errorf("counting users: %w", err)
	}
	for id, states := range counts {
		if _, live := d.set.ByID(id); id == 0 || live || states[account.StateActive] == 0 {
			continue
		}
		n, err := d.syncer.RemoveDirectory(ctx, id)
		if err != nil {
			return fmt.Errorf("blocking users of removed directory %d: %w", id, err)
		}
		d.log.Warn("directory no longer configured: its users are blocked (directory_removed)",
			"directory_id", id, "blocked", n)
	}
	return nil
}

// install swaps in entries for want, reusing unchanged clients.
func (d *Directories) install(want []config.Directory) error {
	old := d.set.List()
	byID := map[uint64]*directory.Entry{}
	for _, e := range old {
		byID[e.Config.ID] = e
	}
	var next []*directory.Entry
	keep := map[*directory.Entry]bool{}
	for _, dc := range want {
		if e, ok := byID[dc.ID]; ok && sameSettings(e.Config, dc) {
			next = append(next, &directory.Entry{Config: dc, Client: e.Client})
			keep[e] = true
			continue
		}
		client, err := directory.Open(dc, d.log, d.m)
		if err != nil {
			for _, e := range next {
				if !keep[byID[e.Config.ID]] {
					e.Client.Close()
				}
			}
			return fmt.Errorf("directory %q: %w", dc.Name, err)
		}
		next = append(next, &directory.Entry{Config: dc, Client: client})
	}
	slices.SortFunc(next, func(a, b *directory.Entry) int { return cmp.Compare(a.Config.ID, b.Config.ID) })
	d.set.Replace(next)
	for _, e := range old {
		if !keep[e] {
			e.Client.Close()
		}
	}
	if d.syncer != nil {
		d.syncer.Reschedule()
	}
	return nil
}

// sameSettings reports whether a client opened for a can serve b. The
// fields the client never reads (the syncer's and the API's settings) are
// blanked and everything else must be equal, so a connection setting added
// later reopens the client by default instead of leaving a stale one.
func sameSettings(a, b config.Directory) bool {
	for _, d := range []*config.Directory{&a, &b} {
		d.RoleMapping, d.DefaultRole, d.Schedule, d.AutoSync, d.MaxBlockFraction, d.Note, d.Managed =
			nil, "", "", nil, nil, "", ""
	}
	return reflect.DeepEqual(a, b)
}

// sameConnection reports whether a and b send the bind password to the
// same servers the same way: URLs, StartTLS, TLS verification, bind DN.
func sameConnection(a, b config.Directory) bool {
	return slices.Equal(a.URLs, b.URLs) && a.StartTLS == b.StartTLS && a.TLS == b.TLS && a.BindDN == b.BindDN
}

// checkTimeout bounds the connection check of a create or edit.
const checkTimeout = 15 * time.Second

// Create validates dc, checks the connection, and only then saves it
// (SPEC §7: a failing check saves nothing).
func (d *Directories) Create(ctx context.Context, dc config.Directory) (config.Directory, directory.CheckResult, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dc.ID = 0
	dc.Managed = config.ManagedAPI
	dc.ApplyDefaults()
	if errs := dc.Validate(d.roles); len(errs) > 0 {
		return dc, directory.CheckResult{}, fmt.Errorf("%w: %w", api.ErrInvalid, errs)
	}
	for _, e := range d.set.List() {
		if strings.EqualFold(e.Config.Name, dc.Name) {
			return dc, directory.CheckResult{}, fmt.Errorf("%w: %q", api.ErrNameTaken, dc.Name)
		}
	}
	res, err := check(ctx, dc, d.log)
	if err != nil {
		return dc, res, err
	}
	saved, err := d.store.SaveDirectory(ctx, dc)
	if err != nil {
		return dc, res, err
	}
	saved.Managed = config.ManagedAPI
	saved.ApplyDefaults()
	return saved, res, d.install(append(configs(d.set.List()), saved))
}

// Update applies patch to an API directory, re-checks the connection when
// connection settings changed, and saves. The patch sees no bind password:
// the stored one is kept only while the connection settings stay as they
// were when it was entered (SPEC §7), so that a changed URL, TLS setting or
// bind DN never has it sent to a server it was not entered for.
func (d *Directories) Update(ctx context.Context, id uint64, patch func(*config.Directory) error) (config.Directory, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.set.ByID(id)
	if !ok {
		return config.Directory{}, api.ErrNoDirectory
	}
	if e.Config.Managed == config.ManagedConfig {
		return e.Config, api.ErrManagedByConfig
	}
	dc := e.Config.Clone() // the patch must not touch the live entry
	dc.BindPassword = ""
	if err := patch(&dc); err != nil {
		return e.Config, fmt.Errorf("%w: %w", api.ErrInvalid, err)
	}
	dc.ID, dc.Managed = id, config.ManagedAPI
	dc.ApplyDefaults()
	if !dc.BindPassword.IsSet() && e.Config.BindPassword.IsSet() {
		if !sameConnection(e.Config, dc) {
			return e.Config, api.ErrPasswordRequired
		}
		dc.BindPassword = e.Config.BindPassword
	}
	if errs := dc.Validate(d.roles); len(errs) > 0 {
		return e.Config, fmt.Errorf("%w: %w", api.ErrInvalid, errs)
	}
	if !sameSettings(e.Config, dc) {
		if _, err := check(ctx, dc, d.log); err != nil {
			return e.Config, err
		}
	}
	saved, err := d.store.SaveDirectory(ctx, dc)
	if err != nil {
		return e.Config, err
	}
	saved.Managed = config.ManagedAPI
	saved.ApplyDefaults()
	list := configs(d.set.List())
	for i := range list {
		if list[i].ID == id {
			list[i] = saved
		}
	}
	return saved, d.install(list)
}

// Delete removes an API directory; its users are blocked first (rule 9).
func (d *Directories) Delete(ctx context.Context, id uint64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.set.ByID(id)
	if !ok {
		return 0, api.ErrNoDirectory
	}
	if e.Config.Managed == config.ManagedConfig {
		return 0, api.ErrManagedByConfig
	}
	blocked, err := d.syncer.RemoveDirectory(ctx, id)
	if err != nil {
		return 0, err
	}
	if err := d.store.DeleteDirectory(ctx, id); err != nil {
		return blocked, err
	}
	list := slices.DeleteFunc(configs(d.set.List()), func(c config.Directory) bool { return c.ID == id })
	return blocked, d.install(list)
}

// Refresh re-reads what the store overrides for directory id (the naming
// after a migration) into the live set.
func (d *Directories) Refresh(ctx context.Context, id uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	list := configs(d.set.List())
	for i := range list {
		if list[i].ID == id {
			if err := d.applyNamingOverride(ctx, &list[i]); err != nil {
				return err
			}
		}
	}
	return d.install(list)
}

// Close closes every client.
func (d *Directories) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, e := range d.set.Replace(nil) {
		e.Client.Close()
	}
}

func check(ctx context.Context, dc config.Directory, log *slog.Logger) (directory.CheckResult, error) {
	client, err := directory.Open(dc, log, nil)
	if err != nil {
		return directory.CheckResult{}, fmt.Errorf("%w: %w", api.ErrCheckFailed, err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	res, err := client.Check(ctx)
	if err != nil {
		return res, fmt.Errorf("%w: %w", api.ErrCheckFailed, err)
	}
	return res, nil
}

func configs(entries []*directory.Entry) []config.Directory {
	out := make([]config.Directory, 0, len(entries))
	for _, e := range entries {
		out = append(out, e.Config)
	}
	return out
}
