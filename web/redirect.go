package web

import (
	"net/url"
	"strings"

	"github.com/valyala/fasthttp"
)

// maxRedirect bounds rd: it travels in a query string and a Location header.
const maxRedirect = 2048

// SafeRedirect returns rd if it is a path on this site, else "/". Only a
// single leading '/' followed by printable ASCII is accepted: "//evil" and
// "/\evil" are scheme-relative to browsers (they treat '\' as '/'), tabs
// and newlines are stripped by browsers ("/\t/evil" becomes "//evil"),
// and anything with a scheme or host is another site (an open redirect).
func SafeRedirect(rd string) (string, bool) {
	if len(rd) == 0 || len(rd) > maxRedirect || rd[0] != '/' {
		return "/", false
	}
	if len(rd) > 1 && (rd[1] == '/' || rd[1] == '\\') {
		return "/", false
	}
	for i := 0; i < len(rd); i++ {
		if c := rd[i]; c < 0x21 || c > 0x7e || c == '\\' {
			return "/", false
		}
	}
	u, err := url.Parse(rd)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") && u.Path != "" {
		return "/", false
	}
	return rd, true
}

// SafeRedirectTo is SafeRedirect that also accepts an absolute http(s)
// URL whose host is ownHost (the host the request came to) or one of
// hosts (login.redirect_hosts; an entry without a port matches any port):
// forward-auth sends the browser back to the platform's page (SPEC §5).
// What a browser could read as another host is refused: userinfo
// ("https://ok@evil"), backslashes ("https://ok\@evil"), anything but
// printable ASCII, "https:evil" and scheme-relative forms.
func SafeRedirectTo(rd, ownHost string, hosts []string) (string, bool) {
	if len(rd) > 0 && rd[0] == '/' {
		return SafeRedirect(rd)
	}
	if len(rd) == 0 || len(rd) > maxRedirect {
		return "/", false
	}
	for i := 0; i < len(rd); i++ {
		if c := rd[i]; c < 0x21 || c > 0x7e || c == '\\' {
			return "/", false
		}
	}
	u, err := url.Parse(rd)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || !strings.HasPrefix(rd, u.Scheme+"://") ||
		u.Opaque != "" || u.User != nil || u.Host == "" || strings.ContainsAny(u.Host, "@%") {
		return "/", false
	}
	if ownHost != "" && strings.EqualFold(u.Host, ownHost) {
		return rd, true
	}
	for _, h := range hosts {
		if strings.EqualFold(u.Host, h) || (!strings.Contains(h, ":") && strings.EqualFold(u.Hostname(), h)) {
			return rd, true
		}
	}
	return "/", false
}

func queryEscape(b []byte) string { return url.QueryEscape(string(b)) }

// redirect sets a relative Location as is. fasthttp's ctx.Redirect would
// make it absolute from the request's Host and scheme, which behind a TLS
// terminating proxy names the wrong scheme (and the Host is the client's).
func redirect(ctx *fasthttp.RequestCtx, loc string, status int) {
	ctx.Response.Header.Set(fasthttp.HeaderLocation, loc)
	ctx.SetStatusCode(status)
}
