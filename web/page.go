package web

import (
	"embed"
	"errors"
	"html/template"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/ldapgate/ldapgate/auth"
)

//go:embed templates/login.html
var templates embed.FS

var loginPage = template.Must(template.ParseFS(templates, "templates/login.html"))

type pageOption struct {
	ID       string
	Name     string
	Domain   string
	Selected bool
}

type pageData struct {
	Error string
	// Change shows the password change form instead of the sign-in one
	// (GET /login?change=1, or a login answered password_change_required).
	Change      bool
	Username    string
	Placeholder string
	RD          string
	// Directories is set only with 2+ directories (SPEC §5).
	Directories []pageOption
}

func (s *Server) pageData(rd, selected string) pageData {
	dirs := s.d.Dirs.List()
	d := pageData{RD: rd}
	switch len(dirs) {
	case 0:
	case 1:
		d.Placeholder = "name@" + dirs[0].Config.DomainName()
	default:
		for _, e := range dirs {
			id := strconv.FormatUint(e.Config.ID, 10)
			d.Directories = append(d.Directories, pageOption{
				ID: id, Name: e.Config.Name, Domain: e.Config.DomainName(), Selected: id == selected,
			})
		}
	}
	return d
}

// securityHeaders: the page has no script and is never framed (no
// clickjacking of the login form), never cached and never leaks rd in a
// Referer to another origin. Referrer-Policy is same-origin, not
// no-referrer: under no-referrer a browser sends the form's POST with
// Origin: null, which over plain HTTP (no Sec-Fetch-Site) the cross-site
// rule cannot tell from a foreign page.
func securityHeaders(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set(fasthttp.HeaderCacheControl, "no-store")
}

func (s *Server) render(ctx *fasthttp.RequestCtx, status int, d pageData) {
	securityHeaders(ctx)
	ctx.SetContentType("text/html; charset=utf-8")
	ctx.SetStatusCode(status)
	if err := s.page.Execute(ctx, d); err != nil {
		s.log.Error("login page", "err", err)
	}
}

// loginPage is GET /login.
func (s *Server) loginPage(ctx *fasthttp.RequestCtx, st *settings) {
	rd, _ := SafeRedirectTo(string(ctx.QueryArgs().Peek("rd")), string(ctx.Host()), st.redirectHosts)
	d := s.pageData(rd, "")
	d.Change = string(ctx.QueryArgs().Peek("change")) == "1"
	s.render(ctx, fasthttp.StatusOK, d)
}

// loginForm is POST /login: on success the cookie and 303 to rd; on
// failure the page again with the JSON login's status code and a message
// that never says whether the user exists. With mode=change it is the
// password change form (SPEC §13), answered the same way.
func (s *Server) loginForm(ctx *fasthttp.RequestCtx, st *settings) {
	body, err := readBody(ctx, maxLoginBody)
	if err != nil {
		d := s.pageData("/", "")
		d.Error = "The form is too large."
		s.render(ctx, fasthttp.StatusRequestEntityTooLarge, d)
		return
	}
	args := fasthttp.AcquireArgs()
	defer fasthttp.ReleaseArgs(args)
	args.ParseBytes(body)
	username := string(args.Peek("username"))
	dir := string(args.Peek("directory"))
	rd, _ := SafeRedirectTo(string(args.Peek("rd")), string(ctx.Host()), st.redirectHosts)
	change := string(args.Peek("mode")) == "change"
	again := func(status int, msg string, change bool) {
		d := s.pageData(rd, dir)
		d.Error, d.Change = msg, change
		if len(username) <= auth.MaxNameLen {
			d.Username = username
		}
		s.render(ctx, status, d)
	}

	var res auth.LoginResult
	if change {
		if string(args.Peek("new_password")) != string(args.Peek("new_password2")) {
			again(fasthttp.StatusUnprocessableEntity, "The new passwords do not match.", true)
			return
		}
		res, err = s.d.Auth.ChangePassword(s.parent(), auth.ChangeRequest{
			Name: username, Directory: dir, OldPassword: string(args.Peek("old_password")),
			NewPassword: string(args.Peek("new_password")), ClientIP: s.clientIP(ctx, st),
		})
	} else {
		res, err = s.d.Auth.Login(s.parent(), auth.LoginRequest{
			Name: username, Password: string(args.Peek("password")), Directory: dir, ClientIP: s.clientIP(ctx, st),
		})
	}
	if err != nil {
		status, _, msg := loginStatus(err)
		retryAfter(ctx, err)
		// A login answered password_change_required continues on the
		// change form (SPEC §13); a refused change stays on it.
		again(status, msg, change || errors.Is(err, auth.ErrPasswordChangeRequired))
		return
	}
	setSessionCookie(ctx, st, res.Token, res.ExpiresAt)
	noStore(ctx)
	redirect(ctx, rd, fasthttp.StatusSeeOther)
}
