package e2e

import (
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ldapgate/ldapgate/internal/ldaptest"
)

// twoFixtures seeds two subtrees of one real slapd: two directories with
// the same login domain, so the login form must offer a choice.
func twoFixtures(t *testing.T) (*ldaptest.Fixture, *ldaptest.Fixture) {
	t.Helper()
	srv := ldaptest.StartSlapd(t)
	return srv.NewFixture(t), srv.NewFixture(t)
}

// upstream shows the identity it received, like the platform would use it.
func upstream(t *testing.T) string {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><p>user <span id="user">%s</span> role <span id="role">%s</span> path <code id="path">%s</code></p>`,
			html.EscapeString(r.Header.Get("X-Forwarded-User")), html.EscapeString(r.Header.Get("X-Forwarded-Role")),
			html.EscapeString(r.URL.RequestURI()))
	}))
	t.Cleanup(ts.Close)
	return ts.URL
}

func twoDirectoryConfig(t *testing.T, addr string, fixtures ...*ldaptest.Fixture) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "listen: %q\nmetrics_listen: %q\nupstream: %q\ndata_dir: %q\nsession: {secure_cookie: false}\ndirectories:\n",
		addr, freePort(t), upstream(t), t.TempDir())
	for i, fx := range fixtures {
		b.WriteString(dirYAML([]string{"first", "second"}[i], fx, ""))
	}
	return b.String()
}
