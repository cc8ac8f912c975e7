package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/auth"
	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/respond"
)

// maxListLimit is SPEC §7's ceiling for user listings.
const maxListLimit = 100000

// routeUser dispatches /auth/v4/user[/{id}[/action]].
func (a *API) routeUser(c context.Context, ctx *fasthttp.RequestCtx, parts []string) {
	if len(parts) == 0 || parts[0] == "" {
		switch {
		case ctx.IsGet():
			a.listUsers(c, ctx)
		case ctx.IsPost():
			a.createUser(c, ctx)
		default:
			methodNotAllowed(ctx)
		}
		return
	}
	id, err := strconv.ParseUint(parts[0], 10, 64)
	if err != nil {
		respond.Error(ctx, fasthttp.StatusNotFound, "user_not_found", "no such user", parts[0])
		return
	}
	u, err := a.d.Store.UserByID(c, id)
	if errors.Is(err, cache.ErrNotFound) {
		respond.Error(ctx, fasthttp.StatusNotFound, "user_not_found", "no such user", parts[0])
		return
	}
	if err != nil {
		internal(ctx, err)
		return
	}
	action := ""
	if len(parts) > 1 {
		action = parts[1]
	}
	method := string(ctx.Method())
	switch {
	case action == "" && method == fasthttp.MethodGet:
		respond.OK(ctx, u)
	case action == "" && method == fasthttp.MethodDelete:
		// Rule 6: a deleted LDAP user comes back with the next sync.
		if err := a.d.Store.DeleteUser(c, id); err != nil {
			internal(ctx, err)
			return
		}
		_ = a.d.Auth.EndUserSessions(c, id)
		a.d.Log.Info("user deleted by admin", "user_id", id, "username", u.Username)
		respond.OK(ctx, nil)
	case action == "block" && method == fasthttp.MethodPost:
		a.setBlocked(c, ctx, id, true)
	case action == "unblock" && method == fasthttp.MethodPost:
		a.setBlocked(c, ctx, id, false)
	case action == "password" && method == fasthttp.MethodPost:
		a.setPassword(c, ctx, u)
	default:
		notFound(ctx)
	}
}

func (a *API) listUsers(c context.Context, ctx *fasthttp.RequestCtx) {
	args := ctx.QueryArgs()
	f := cache.UserFilter{
		State:  string(args.Peek("state")),
		Role:   string(args.Peek("role")),
		Source: string(args.Peek("source")),
		Query:  strings.TrimSpace(string(args.Peek("q"))),
		Limit:  queryInt(ctx, "limit", maxListLimit, maxListLimit),
		Offset: queryInt(ctx, "offset", 0, 1<<31-1),
	}
	if ref := string(args.Peek("directory")); ref != "" {
		e, ok := a.d.Dirs.Set().ByRef(ref)
		if !ok {
			respond.Error(ctx, fasthttp.StatusNotFound, "directory_not_found", "no such directory", ref)
			return
		}
		f.DirectoryID = e.Config.ID
	}
	l, err := a.d.Store.OpenUserList(c, f)
	if err != nil {
		internal(ctx, err)
		return
	}
	// Streamed as the users are read (SPEC §7): 100,000 users are ~45 MB
	// of JSON, which the process would otherwise hold twice (records and
	// encoding). The writer runs after this handler has returned, so it
	// has its own deadline; an error past the first byte can only cut the
	// answer short, which the client sees as invalid JSON.
	ctx.Response.Header.SetContentType("application/json")
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		defer l.Close()
		sc, cancel := context.WithTimeout(a.parent(), requestTimeout)
		defer cancel()
		// size is the page's length; total counts every match for paging.
		fmt.Fprintf(w, `{"size":%d,"total":%d,"list":[`, l.Len(), l.Total())
		enc := json.NewEncoder(w)
		first := true
		err := l.Each(sc, func(u *account.User) error {
			if !first {
				w.WriteByte(',')
			}
			first = false
			return enc.Encode(u)
		})
		if err != nil {
			// Also a client that went away mid-answer: a warning, not an error.
			a.d.Log.Warn("user listing cut short", "err", err)
			return
		}
		w.WriteString("]}")
	})
}

type newUser struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Role     string `json:"role"`
	Email    string `json:"email"`
}

func (a *API) createUser(c context.Context, ctx *fasthttp.RequestCtx) {
	raw, ok := readBody(ctx)
	if !ok {
		return
	}
	var in newUser
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		respond.Error(ctx, fasthttp.StatusBadRequest, "bad_json", err.Error(), nil)
		return
	}
	name := account.NormalizeName(in.Username)
	roles := a.st.Load().roles
	switch {
	case name == "":
		respond.Error(ctx, fasthttp.StatusUnprocessableEntity, "invalid_username", "username is required", nil)
		return
	case in.Password == "":
		respond.Error(ctx, fasthttp.StatusUnprocessableEntity, "invalid_password", "password is required", nil)
		return
	case in.Role == "":
		in.Role = roles[len(roles)-1]
	}
	if !slices.Contains(roles, in.Role) {
		respond.Error(ctx, fasthttp.StatusUnprocessableEntity, "invalid_role", "unknown role", in.Role)
		return
	}
	hash, err := auth.HashPassword(in.Password)
	if err != nil {
		internal(ctx, err)
		return
	}
	u, err := a.d.Store.CreateUser(c, account.User{
		Username: name, Email: in.Email, Role: in.Role, State: account.StateActive,
		Source: account.SourceLocal, PasswordHash: hash, Groups: []string{},
	})
	if errors.Is(err, cache.ErrNameTaken) {
		respond.Error(ctx, fasthttp.StatusConflict, "username_taken", "a user with this name exists", name)
		return
	}
	if err != nil {
		internal(ctx, err)
		return
	}
	a.d.Log.Info("local user created", "user_id", u.ID, "username", u.Username, "role", u.Role)
	respond.OK(ctx, u)
}

// setBlocked: an admin block (reason admin) is the one sync never undoes
// (rule 10); it ends the user's sessions at once.
func (a *API) setBlocked(c context.Context, ctx *fasthttp.RequestCtx, id uint64, block bool) {
	u, err := a.d.Store.UpdateUser(c, id, func(u *account.User) error {
		if block {
			u.State, u.BlockReason = account.StateBlocked, account.ReasonAdmin
		} else {
			// The next sync re-applies the directory's verdict (deleted,
			// disabled, out of scope) if there is one.
			u.State, u.BlockReason = account.StateActive, account.ReasonNone
		}
		return nil
	})
	if err != nil {
		internal(ctx, err)
		return
	}
	if block {
		_ = a.d.Auth.EndUserSessions(c, id)
	}
	a.d.Log.Info("user block changed by admin", "user_id", id, "username", u.Username, "blocked", block)
	respond.OK(ctx, u)
}

// setPassword: local users only; an LDAP user's password lives in the
// directory (guide rule 4), so the platform may not set it (409).
func (a *API) setPassword(c context.Context, ctx *fasthttp.RequestCtx, u account.User) {
	if u.Source != account.SourceLocal {
		respond.Error(ctx, fasthttp.StatusConflict, "ldap_user",
			"this user's password is kept in the LDAP directory; change it there", nil)
		return
	}
	var in struct {
		Password string `json:"password"`
	}
	raw, ok := readBody(ctx)
	if !ok {
		return
	}
	if err := json.Unmarshal(raw, &in); err != nil {
		respond.Error(ctx, fasthttp.StatusBadRequest, "bad_json", err.Error(), nil)
		return
	}
	if in.Password == "" {
		respond.Error(ctx, fasthttp.StatusUnprocessableEntity, "invalid_password", "password is required", nil)
		return
	}
	hash, err := auth.HashPassword(in.Password)
	if err != nil {
		internal(ctx, err)
		return
	}
	u, err = a.d.Store.UpdateUser(c, u.ID, func(x *account.User) error {
		if x.Source != account.SourceLocal { // converted by a sync meanwhile
			return errLDAPUser
		}
		x.PasswordHash = hash
		return nil
	})
	if errors.Is(err, errLDAPUser) {
		respond.Error(ctx, fasthttp.StatusConflict, "ldap_user", "this user's password is kept in the LDAP directory", nil)
		return
	}
	if err != nil {
		internal(ctx, err)
		return
	}
	respond.OK(ctx, u)
}

var errLDAPUser = errors.New("ldap user")
