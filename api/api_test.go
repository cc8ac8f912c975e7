package api

import (
	"io"
	"log/slog"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/auth"
	"github.com/ldapgate/ldapgate/config"
)

// TestReloadAdminSettings: after Reload only the new admin token opens the
// API, and the admin role is the first of the new roles. The log level
// route is used because it needs no store or directories.
func TestReloadAdminSettings(t *testing.T) {
	const oldToken, newToken = "old-admin-token-0123456789", "new-admin-token-0123456789"
	a := New(Deps{
		Config:     &config.Config{Roles: []string{"admin", "user"}},
		AdminToken: oldToken,
		Log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		Level:      new(slog.LevelVar),
	})
	h := a.Handler()
	call := func(bearer, role string) int {
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod("POST")
		ctx.Request.SetRequestURI("/auth/v4/internal/settings/log/level")
		ctx.Request.SetBodyString("info")
		if bearer != "" {
			ctx.Request.Header.Set("Authorization", "Bearer "+bearer)
		}
		if role != "" {
			auth.SetCaller(&ctx, &account.User{Username: "u@example.com", Role: role, State: account.StateActive})
		}
		h(&ctx)
		return ctx.Response.StatusCode()
	}
	check := func(when, bearer, role string, want int) {
		t.Helper()
		if got := call(bearer, role); got != want {
			t.Errorf("%s: bearer %q, session role %q: %d, want %d", when, bearer, role, got, want)
		}
	}

	check("before reload", oldToken, "", 200)
	check("before reload", newToken, "", 401)
	check("before reload", "", "admin", 200)
	check("before reload", "", "owner", 403)

	a.Reload(&config.Config{AdminToken: newToken, Roles: []string{"owner", "admin", "user"}})
	check("after reload", oldToken, "", 401)
	check("after reload", newToken, "", 200)
	check("after reload", "", "owner", 200)
	check("after reload", "", "admin", 403)

	// A config without admin_token_file turns the token off.
	a.Reload(&config.Config{Roles: []string{"admin", "user"}})
	check("after dropping the token file", newToken, "", 401)
	check("after dropping the token file", "", "admin", 200)
}
