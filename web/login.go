package web

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/ldapgate/ldapgate/auth"
	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/respond"
)

// maxLoginBody bounds login bodies: the server streams request bodies (for
// the proxy), so nothing else stops a gigabyte "login form".
const maxLoginBody = 64 << 10

var errBodyTooLarge = errors.New("request body too large")

// readBody reads at most limit bytes of the request body.
func readBody(ctx *fasthttp.RequestCtx, limit int) ([]byte, error) {
	if cl := ctx.Request.Header.ContentLength(); cl > limit {
		return nil, errBodyTooLarge
	}
	if !ctx.Request.IsBodyStream() {
		b := ctx.Request.Body()
		if len(b) > limit {
			return nil, errBodyTooLarge
		}
		return b, nil
	}
	b, err := io.ReadAll(io.LimitReader(ctx.RequestBodyStream(), int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if len(b) > limit {
		return nil, errBodyTooLarge
	}
	return b, nil
}

// dirRef is the login request's "directory": an id (number or string) or
// a name.
type dirRef string

func (d *dirRef) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*d = ""
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*d = dirRef(s)
	default:
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("directory: want an id or a name")
		}
		*d = dirRef(n.String())
	}
	return nil
}

type tokenRequest struct {
	Email     string `json:"email"`
	Username  string `json:"username"`
	Password  string `json:"password"`
	Directory dirRef `json:"directory"`
}

type tokenAnswer struct {
	ID        string `json:"id"`
	Token     string `json:"token"`
	ExpiresAt string `json:"expires_at"`
	Confirmed bool   `json:"confirmed"`
}

// tokenLogin is POST /auth/v4/public/token (SPEC §5, auth v4 shape).
func (s *Server) tokenLogin(ctx *fasthttp.RequestCtx, st *settings) {
	var in tokenRequest
	if !readJSON(ctx, &in, "the body is not a valid login request") {
		return
	}
	res, err := s.d.Auth.Login(s.parent(), auth.LoginRequest{
		Name: cmp.Or(in.Email, in.Username), Password: in.Password, Directory: string(in.Directory),
		ClientIP: s.clientIP(ctx, st),
	})
	s.answerLogin(ctx, st, res, err)
}

// readJSON reads the bounded body of a login-like request into v; on a
// failure it has answered (413, or 400 with badMsg).
func readJSON(ctx *fasthttp.RequestCtx, v any, badMsg string) bool {
	body, err := readBody(ctx, maxLoginBody)
	if err != nil {
		respond.Error(ctx, fasthttp.StatusRequestEntityTooLarge, "body_too_large", "request body too large", nil)
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		respond.Error(ctx, fasthttp.StatusBadRequest, "bad_json", badMsg, nil)
		return false
	}
	return true
}

// answerLogin is the token endpoint's answer to a login (or a password
// change, which logs in): the session cookie and the auth v4 token shape,
// or the login error.
func (s *Server) answerLogin(ctx *fasthttp.RequestCtx, st *settings, res auth.LoginResult, err error) {
	if err != nil {
		loginError(ctx, err)
		return
	}
	setSessionCookie(ctx, st, res.Token, res.ExpiresAt)
	noStore(ctx)
	respond.OK(ctx, tokenAnswer{
		ID: strconv.FormatUint(res.User.ID, 10), Token: res.Token,
		ExpiresAt: res.ExpiresAt.UTC().Format(time.RFC3339), Confirmed: true,
	})
}

// loginStatus maps a login error to its answer (SPEC §5 error shape).
func loginStatus(err error) (status int, code, msg string) {
	var rl *auth.RateLimitedError
	var refused *auth.PasswordRefusedError
	switch {
	case errors.As(err, &rl):
		return fasthttp.StatusTooManyRequests, "too_many_attempts", "Too many failed attempts. Try again later."
	case errors.Is(err, auth.ErrAmbiguousDirectory):
		return fasthttp.StatusBadRequest, "ambiguous_directory", "Several directories use this domain. Choose a directory."
	case errors.Is(err, auth.ErrUnknownDirectory):
		return fasthttp.StatusBadRequest, "unknown_directory", "Unknown directory."
	case errors.Is(err, auth.ErrBadCredentials):
		return fasthttp.StatusUnauthorized, "bad_credentials", msgBadCredentials
	case errors.Is(err, auth.ErrPasswordChangeRequired):
		return fasthttp.StatusForbidden, "password_change_required", msgChangeRequired
	case errors.Is(err, auth.ErrAccountLocked):
		return fasthttp.StatusForbidden, "account_locked",
			"This account is temporarily locked in the directory. Try again later or contact your administrator."
	case errors.As(err, &refused):
		// The directory's reason, in its words (SPEC §13); it never holds
		// a password.
		return fasthttp.StatusUnprocessableEntity, "password_refused",
			"The directory refused the new password: " + refused.Reason + "."
	case errors.Is(err, auth.ErrTLSRequired):
		return fasthttp.StatusUnprocessableEntity, "tls_required",
			"This directory changes passwords only over an encrypted connection (LDAPS or StartTLS), which is not configured. Contact your administrator."
	case errors.Is(err, auth.ErrNotDirectoryUser):
		return fasthttp.StatusUnprocessableEntity, "not_a_directory_user",
			"This account's password is set by an administrator."
	case errors.Is(err, auth.ErrForbidden):
		return fasthttp.StatusForbidden, "forbidden", "This account may not log in. Contact your administrator."
	case errors.Is(err, auth.ErrUnavailable):
		return fasthttp.StatusServiceUnavailable, "directory_unavailable", "The directory is unavailable. Try again later."
	case errors.Is(err, cache.ErrUnavailable):
		return fasthttp.StatusServiceUnavailable, "store_unavailable", "The service is unavailable. Try again later."
	}
	return fasthttp.StatusInternalServerError, "internal", "Internal error."
}

const (
	msgBadCredentials = "Invalid username or password."
	msgChangeRequired = "Your password has expired or must be changed. Choose a new one."
)

// retryAfter sets Retry-After for a rate-limited answer.
func retryAfter(ctx *fasthttp.RequestCtx, err error) {
	var rl *auth.RateLimitedError
	if errors.As(err, &rl) {
		ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, strconv.Itoa(int(math.Ceil(rl.RetryAfter.Seconds()))))
	}
}

func loginError(ctx *fasthttp.RequestCtx, err error) {
	status, code, msg := loginStatus(err)
	retryAfter(ctx, err)
	respond.Error(ctx, status, code, msg, nil)
}

// setSessionCookie: HttpOnly (no script reads it), SameSite=Lax (not sent
// on cross-site POSTs), Secure unless configured off, Path=/ (the whole
// platform), expiring with the session.
func setSessionCookie(ctx *fasthttp.RequestCtx, st *settings, token string, exp time.Time) {
	c := fasthttp.AcquireCookie()
	defer fasthttp.ReleaseCookie(c)
	c.SetKey(st.cookieName)
	c.SetValue(token)
	c.SetPath("/")
	c.SetHTTPOnly(true)
	c.SetSameSite(fasthttp.CookieSameSiteLaxMode)
	c.SetSecure(st.secure)
	if st.cookieDomain != "" {
		c.SetDomain(st.cookieDomain)
	}
	c.SetExpire(exp)
	ctx.Response.Header.SetCookie(c)
}

// clearSessionCookie deletes the cookie with the attributes it was set with.
func clearSessionCookie(ctx *fasthttp.RequestCtx, st *settings) {
	setSessionCookie(ctx, st, "", fasthttp.CookieExpireDelete)
}

// logout ends the request's session (POST /auth/v4/logout, POST /logout).
// Without a valid session it still clears the cookie: logout is idempotent.
func (s *Server) logout(ctx *fasthttp.RequestCtx, st *settings, page bool) {
	_, tok, err := s.d.Auth.RequestSession(s.parent(), &ctx.Request.Header, st.cookieName)
	if err == nil {
		if err := s.d.Auth.Logout(s.parent(), string(tok)); err != nil {
			s.log.Error("logout", "err", err)
			respond.Error(ctx, fasthttp.StatusInternalServerError, "internal", "Internal error.", nil)
			return
		}
	}
	clearSessionCookie(ctx, st)
	noStore(ctx)
	if page {
		redirect(ctx, pathLogin, fasthttp.StatusSeeOther)
		return
	}
	respond.OK(ctx, nil)
}

// deleteToken is DELETE /auth/v4/token/{token}: knowing a token is what
// it takes to use it, so it is also enough to end it.
func (s *Server) deleteToken(ctx *fasthttp.RequestCtx, tok string) {
	if !auth.ValidToken([]byte(tok)) {
		respond.Error(ctx, fasthttp.StatusNotFound, "token_not_found", "no such token", nil)
		return
	}
	if err := s.d.Auth.Logout(s.parent(), tok); err != nil {
		s.log.Error("delete token", "err", err)
		respond.Error(ctx, fasthttp.StatusInternalServerError, "internal", "Internal error.", nil)
		return
	}
	respond.OK(ctx, nil)
}
