package api

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/directory"
	"github.com/ldapgate/ldapgate/respond"
	"github.com/ldapgate/ldapgate/syncer"
)

// directoryView is a directory as answered: never the bind password.
type directoryView struct {
	config.Directory
	Domain string `json:"domain"`
	// Live is the live-change state (SPEC §13). It shadows the config's
	// boolean "live" in answers: "off" says live is off (or down).
	Live syncer.LiveStatus `json:"live"`
}

func (a *API) viewOf(dc config.Directory) directoryView {
	dc.BindPassword = "" // Secret marshals to "" anyway; empty omits the key
	return directoryView{Directory: dc, Domain: dc.DomainName(), Live: a.d.Syncer.LiveStatus(dc.ID)}
}

// routeLDAP dispatches /auth/v4/ldap[/{id}[/action[/{run}]]].
func (a *API) routeLDAP(c context.Context, ctx *fasthttp.RequestCtx, parts []string) {
	if len(parts) == 0 || parts[0] == "" {
		switch {
		case ctx.IsGet():
			a.listDirectories(c, ctx)
		case ctx.IsPost():
			a.createDirectory(c, ctx)
		default:
			methodNotAllowed(ctx)
		}
		return
	}
	if len(parts) == 1 && parts[0] == "schedule" && ctx.IsGet() {
		// Shadows a directory named "schedule" for GET by name only; its id
		// still reaches it.
		scheduleNext(ctx, time.Now())
		return
	}
	e, ok := a.d.Dirs.Set().ByRef(parts[0])
	if !ok {
		respond.Error(ctx, fasthttp.StatusNotFound, "directory_not_found", "no such directory", parts[0])
		return
	}
	id := e.Config.ID
	action := ""
	if len(parts) > 1 {
		action = parts[1]
	}
	method := string(ctx.Method())
	switch {
	case action == "" && method == fasthttp.MethodGet:
		respond.OK(ctx, a.viewOf(e.Config))
	case action == "" && method == fasthttp.MethodPatch:
		a.patchDirectory(c, ctx, id)
	case action == "" && method == fasthttp.MethodDelete:
		blocked, err := a.d.Dirs.Delete(c, id)
		if err != nil {
			a.dirError(ctx, err)
			return
		}
		respond.OK(ctx, map[string]int{"blocked_users": blocked})
	case action == "check" && method == fasthttp.MethodPost:
		res, err := e.Client.Check(c)
		if err != nil {
			respond.Error(ctx, fasthttp.StatusUnprocessableEntity, "ldap_check_failed", err.Error(), nil)
			return
		}
		respond.OK(ctx, res)
	case action == "sync" && method == fasthttp.MethodPost:
		a.sync(c, ctx, id)
	case action == "preview" && method == fasthttp.MethodGet:
		a.preview(c, ctx, id)
	case action == "migrate" && method == fasthttp.MethodPost:
		res, err := a.d.Syncer.Migrate(c, id)
		var conflict *syncer.ConflictError
		switch {
		case errors.As(err, &conflict):
			respond.Error(ctx, fasthttp.StatusConflict, "migration_conflict",
				"migration cancelled: these new names are already taken; nothing was changed", conflict.Names)
		case err != nil:
			a.syncError(ctx, err)
		default:
			if err := a.d.Dirs.Refresh(c, id); err != nil {
				a.d.Log.Error("directory not refreshed after migration", "directory_id", id, "err", err)
			}
			respond.OK(ctx, res)
		}
	case action == "runs" && method == fasthttp.MethodGet && len(parts) == 2:
		limit := queryInt(ctx, "limit", 100, 10000)
		runs, err := a.d.Store.Runs(c, id, limit)
		if err != nil {
			internal(ctx, err)
			return
		}
		respond.OK(ctx, respond.NewList(runs))
	case action == "runs" && method == fasthttp.MethodGet && len(parts) == 3:
		a.runChanges(c, ctx, id, parts[2])
	default:
		notFound(ctx)
	}
}

// directoryItem is a directory in the list: its settings plus what the
// console's connections table shows next to them.
type directoryItem struct {
	directoryView
	// Users counts the directory's users by state.
	Users map[account.State]int `json:"users"`
	// LastRun is the newest sync run (dry runs included), absent before any.
	LastRun *cache.Run `json:"last_run,omitempty"`
}

func (a *API) listDirectories(c context.Context, ctx *fasthttp.RequestCtx) {
	// One pass over the listing index counts every directory's users, so
	// the table costs the same with 100,000 users as with ten.
	counts, err := a.d.Store.CountUsers(c)
	if err != nil {
		internal(ctx, err)
		return
	}
	out := []directoryItem{}
	for _, e := range a.d.Dirs.Set().List() {
		it := directoryItem{directoryView: a.viewOf(e.Config), Users: counts[e.Config.ID]}
		if it.Users == nil {
			it.Users = map[account.State]int{}
		}
		runs, err := a.d.Store.Runs(c, e.Config.ID, 1)
		if err != nil {
			internal(ctx, err)
			return
		}
		if len(runs) > 0 {
			it.LastRun = &runs[0]
		}
		out = append(out, it)
	}
	respond.OK(ctx, respond.NewList(out))
}

func (a *API) createDirectory(c context.Context, ctx *fasthttp.RequestCtx) {
	raw, ok := readBody(ctx)
	if !ok {
		return
	}
	var dc config.Directory
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&dc); err != nil {
		respond.Error(ctx, fasthttp.StatusBadRequest, "bad_json", err.Error(), nil)
		return
	}
	saved, res, err := a.d.Dirs.Create(c, dc)
	if err != nil {
		a.dirError(ctx, err)
		return
	}
	a.d.Log.Info("directory created", "directory", saved.Name, "id", saved.ID, "users", res.Users)
	respond.OK(ctx, a.viewOf(saved))
}

// patchDirectory merges the given keys onto the directory: keys not sent
// keep their values; bind_password too, unless the connection settings
// change (ErrPasswordRequired).
func (a *API) patchDirectory(c context.Context, ctx *fasthttp.RequestCtx, id uint64) {
	body, ok := readBody(ctx)
	if !ok {
		return
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(body, &keys); err != nil {
		respond.Error(ctx, fasthttp.StatusBadRequest, "bad_json", err.Error(), nil)
		return
	}
	saved, err := a.d.Dirs.Update(c, id, func(dc *config.Directory) error {
		if _, ok := keys["role_mapping"]; ok {
			dc.RoleMapping = nil // replace, not merge
		}
		if _, ok := keys["urls"]; ok {
			dc.URLs = nil
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		return dec.Decode(dc)
	})
	if err != nil {
		a.dirError(ctx, err)
		return
	}
	respond.OK(ctx, a.viewOf(saved))
}

func (a *API) sync(c context.Context, ctx *fasthttp.RequestCtx, id uint64) {
	args := ctx.QueryArgs()
	run, err := a.d.Syncer.Sync(c, id, syncer.Options{
		DryRun: args.GetBool("dry_run"), Force: args.GetBool("force"), Trigger: syncer.TriggerAPI,
	})
	if err != nil && run.ID == 0 {
		a.syncError(ctx, err)
		return
	}
	// A failed or refused run is still a run: its record says why.
	if run.Result != cache.RunDryRun {
		respond.OK(ctx, run)
		return
	}
	// A dry run answers its plan too: the changes it recorded, each
	// "planned": true (also at GET .../runs/{run}).
	changes, err := a.d.Store.RunChanges(c, run.ID)
	if err != nil {
		internal(ctx, err)
		return
	}
	respond.OK(ctx, struct {
		cache.Run
		Changes []cache.AuditEntry `json:"changes"`
	}{run, changes})
}

func (a *API) preview(c context.Context, ctx *fasthttp.RequestCtx, id uint64) {
	rows, err := a.d.Syncer.Preview(c, id)
	if err != nil {
		a.syncError(ctx, err)
		return
	}
	if string(ctx.QueryArgs().Peek("format")) != "csv" {
		respond.OK(ctx, respond.NewList(rows))
		return
	}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	_ = w.Write([]string{"username", "email", "role", "exists", "action"})
	for _, r := range rows {
		_ = w.Write([]string{r.Username, r.Email, r.Role, strconv.FormatBool(r.Exists), r.Action})
	}
	w.Flush()
	ctx.Response.Header.SetContentType("text/csv; charset=utf-8")
	ctx.Response.Header.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="ldap-%d-preview.csv"`, id))
	ctx.SetBody(buf.Bytes())
}

func (a *API) runChanges(c context.Context, ctx *fasthttp.RequestCtx, dirID uint64, ref string) {
	runID, err := strconv.ParseUint(ref, 10, 64)
	if err != nil {
		respond.Error(ctx, fasthttp.StatusNotFound, "run_not_found", "no such run", ref)
		return
	}
	run, err := a.d.Store.Run(c, runID)
	if errors.Is(err, cache.ErrNotFound) || (err == nil && run.DirectoryID != dirID) {
		respond.Error(ctx, fasthttp.StatusNotFound, "run_not_found", "no such run", ref)
		return
	}
	if err != nil {
		internal(ctx, err)
		return
	}
	changes, err := a.d.Store.RunChanges(c, runID)
	if err != nil {
		internal(ctx, err)
		return
	}
	respond.OK(ctx, struct {
		Run  cache.Run          `json:"run"`
		List []cache.AuditEntry `json:"list"`
		Size int                `json:"size"`
	}{run, changes, len(changes)})
}

// ErrPasswordRequired: a PATCH changed where or how ldapgate connects
// (urls, start_tls, tls, bind_dn) without giving bind_password again; the
// stored one is never sent to a server it was not entered for (422).
var ErrPasswordRequired = errors.New("bind_password is required when urls, start_tls, tls or bind_dn change")

// dirError maps directory-management errors to statuses.
func (a *API) dirError(ctx *fasthttp.RequestCtx, err error) {
	switch {
	case errors.Is(err, ErrPasswordRequired):
		respond.Error(ctx, fasthttp.StatusUnprocessableEntity, "bind_password_required", err.Error(), nil)
	case errors.Is(err, ErrManagedByConfig):
		respond.Error(ctx, fasthttp.StatusConflict, "managed_by_config",
			"this directory is declared in the config file; change it there", nil)
	case errors.Is(err, ErrNameTaken):
		respond.Error(ctx, fasthttp.StatusConflict, "name_taken", err.Error(), nil)
	case errors.Is(err, ErrCheckFailed):
		respond.Error(ctx, fasthttp.StatusUnprocessableEntity, "ldap_check_failed", err.Error(), nil)
	case errors.Is(err, ErrInvalid):
		var errs config.Errors
		var value any
		if errors.As(err, &errs) {
			value = errs
		}
		respond.Error(ctx, fasthttp.StatusUnprocessableEntity, "invalid_directory", err.Error(), value)
	case errors.Is(err, ErrNoDirectory):
		respond.Error(ctx, fasthttp.StatusNotFound, "directory_not_found", "no such directory", nil)
	default:
		internal(ctx, err)
	}
}

func (a *API) syncError(ctx *fasthttp.RequestCtx, err error) {
	switch {
	case errors.Is(err, directory.ErrUnavailable):
		respond.Error(ctx, fasthttp.StatusServiceUnavailable, "ldap_unavailable", err.Error(), nil)
	case errors.Is(err, directory.ErrIncompleteRead):
		respond.Error(ctx, fasthttp.StatusBadGateway, "ldap_read_incomplete", err.Error(), nil)
	default:
		internal(ctx, err)
	}
}

func internal(ctx *fasthttp.RequestCtx, err error) {
	respond.Error(ctx, fasthttp.StatusInternalServerError, "internal", err.Error(), nil)
}

func queryInt(ctx *fasthttp.RequestCtx, key string, def, max int) int {
	v, err := ctx.QueryArgs().GetUint(key)
	if err != nil || v <= 0 {
		return def
	}
	return min(v, max)
}
