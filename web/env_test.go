package web

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/valyala/fasthttp"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/auth"
	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/cache/badgerstore"
	"github.com/ldapgate/ldapgate/cache/pgstore"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/directory"
	"github.com/ldapgate/ldapgate/internal/ldaptest"
	"github.com/ldapgate/ldapgate/internal/pgtest"
	"github.com/ldapgate/ldapgate/metrics"
	"github.com/ldapgate/ldapgate/proxy"
	"github.com/ldapgate/ldapgate/syncer"
)

var testLog = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

// echo is what the test upstream saw.
type echo struct {
	Path    string              `json:"path"`
	Headers map[string][]string `json:"headers"`
	Cookies []string            `json:"cookies"`
}

// upstream echoes the request it got as JSON; /ws is a WebSocket echo.
func upstream(t testing.TB) *httptest.Server {
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" {
			c, err := up.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer c.Close()
			for {
				mt, msg, err := c.ReadMessage()
				if err != nil {
					return
				}
				reply := append([]byte(r.Header.Get("X-Forwarded-User")+":"), msg...)
				if err := c.WriteMessage(mt, reply); err != nil {
					return
				}
			}
		}
		e := echo{Path: r.URL.RequestURI(), Headers: map[string][]string{}}
		// r.Header canonicalises keys: X_Forwarded_User stays as is
		// (Go leaves keys with '_' alone), so spoofed spellings are seen.
		for k, v := range r.Header {
			e.Headers[k] = v
		}
		for _, c := range r.Cookies() {
			e.Cookies = append(e.Cookies, c.Name+"="+c.Value)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(e)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// stack is the whole front on a real fasthttp server over real slapd,
// badger and an upstream.
type stack struct {
	srv   *ldaptest.Server
	fx    *ldaptest.Fixture
	cfg   *config.Config
	store cache.Backend
	dirs  *directory.Set
	sy    *syncer.Syncer
	m     *metrics.Metrics
	auth  *auth.Service
	web   *Server
	up    *httptest.Server
	url   string
	// admin records the caller the admin handler saw.
	adminCaller chan string
}

type stackOpts struct {
	tweak    func(*config.Config)
	upstream string // default: the echo server
	extraDir bool   // a second fixture with the same domain
	// wrapStore wraps the store auth uses; ctx is Deps.Context.
	wrapStore func(cache.Backend) cache.Backend
	ctx       context.Context
}

func newStack(t testing.TB, o stackOpts) *stack {
	t.Helper()
	srv := ldaptest.StartSlapd(t)
	if srv == nil {
		return nil
	}
	s := &stack{srv: srv, fx: srv.NewFixture(t), m: metrics.New(), adminCaller: make(chan string, 16)}
	s.cfg = &config.Config{}
	s.cfg.Session.SecureCookie = new(bool) // plain-HTTP tests
	s.cfg.PublicPaths = []string{"/static/"}
	s.cfg.Login.MaxFailures = 1000
	s.cfg.Login.MaxFailuresPerAddress = 1000
	if o.tweak != nil {
		o.tweak(s.cfg)
	}
	s.cfg.ApplyDefaults()
	var err error
	s.store = openTestStore(t, s.m)
	s.dirs = directory.NewSet()
	s.addDir(t, s.fx.Dir)
	if o.extraDir {
		s.addDir(t, srv.NewFixture(t).Dir)
	}
	s.sy = syncer.New(s.store, s.dirs, s.cfg.Roles, testLog, s.m)
	for _, d := range s.dirs.List() {
		if _, err := s.sy.Sync(context.Background(), d.Config.ID, syncer.Options{Trigger: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	authStore := s.store
	if o.wrapStore != nil {
		authStore = o.wrapStore(s.store)
	}
	if s.auth, err = auth.New(auth.Deps{Config: s.cfg, Store: authStore, Dirs: s.dirs, Syncer: s.sy, Log: testLog, Metrics: s.m}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.auth.Close)
	s.up = upstream(t)
	target := o.upstream
	if target == "" {
		target = s.up.URL
	}
	px, err := proxy.New(proxy.Options{Upstream: target, Headers: s.cfg.Headers, CookieName: s.cfg.Session.CookieName}, testLog, s.m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = px.Close() })
	admin := func(ctx *fasthttp.RequestCtx) {
		name := "-"
		if u, ok := auth.Caller(ctx); ok {
			name = u.Username
		}
		s.adminCaller <- name
		ctx.SetStatusCode(fasthttp.StatusOK)
		ctx.SetBodyString("{}")
	}
	if s.web, err = New(Deps{Config: s.cfg, Auth: s.auth, Proxy: px, Dirs: s.dirs, Log: testLog, Metrics: s.m, Admin: admin, Context: o.ctx}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := &fasthttp.Server{
		Handler: s.web.Handler(), StreamRequestBody: true, DisablePreParseMultipartForm: true,
		NoDefaultServerHeader: true, ReadTimeout: time.Minute, CloseOnShutdown: true,
	}
	go func() { _ = fs.Serve(ln) }()
	t.Cleanup(func() { _ = fs.Shutdown() })
	s.url = "http://" + ln.Addr().String()
	return s
}

func (s *stack) addDir(t testing.TB, dc config.Directory) *directory.Entry {
	t.Helper()
	id, err := s.store.DirectoryIDForName(context.Background(), dc.Name)
	if err != nil {
		t.Fatal(err)
	}
	dc.ID = id
	dc.ApplyDefaults()
	cl, err := directory.Open(dc, testLog, s.m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	e := &directory.Entry{Config: dc, Client: cl}
	s.dirs.Replace(append(append([]*directory.Entry(nil), s.dirs.List()...), e))
	return e
}

func (s *stack) setState(t testing.TB, logical string, st account.State, r account.BlockReason) {
	t.Helper()
	u, err := s.store.UserByName(context.Background(), s.fx.Login(logical))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.store.UpdateUser(context.Background(), u.ID, func(x *account.User) error {
		x.State, x.BlockReason = st, r
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

var client = &http.Client{
	Timeout:       20 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("answer %d %q: %v", r.status, r.body, err)
	}
}

func (r reply) errCode(t testing.TB) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
			Msg  string `json:"msg"`
		} `json:"error"`
	}
	r.json(t, &e)
	return e.Error.Code
}

// do sends a request; headers given as "Name: value" lines keep their
// exact spelling (no canonicalisation), so spoofing tests send what an
// attacker would.
func (s *stack) do(t testing.TB, method, path, body string, headers ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header[k] = append(req.Header[k], strings.TrimSpace(v))
	}
	if strings.HasPrefix(path, "/login") && method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Header, b}
}

func loginBody(name, pw string, extra ...string) string {
	m := map[string]string{"email": name, "password": pw}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i]] = extra[i+1]
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// login returns a session token of the logical user.
func (s *stack) login(t testing.TB, logical string) string {
	t.Helper()
	r := s.do(t, "POST", "/auth/v4/public/token", loginBody(s.fx.Login(logical), ldaptest.Password))
	if r.status != 200 {
		t.Fatalf("login %s: %d %s", logical, r.status, r.body)
	}
	var a struct {
		Token string `json:"token"`
	}
	r.json(t, &a)
	return a.Token
}

func (s *stack) cookie(tok string) string { return "Cookie: " + s.cfg.Session.CookieName + "=" + tok }

// openTestStore is badger, or with LDAPGATE_TEST_STORE=postgres a database
// of the test cluster: the pages answer the same on both (SPEC §12).
func openTestStore(t testing.TB, m *metrics.Metrics) cache.Backend {
	t.Helper()
	if os.Getenv("LDAPGATE_TEST_STORE") == "postgres" {
		st, err := pgstore.Open(context.Background(), pgtest.DSN(t), pgstore.Options{Log: testLog})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	}
	st, err := badgerstore.Open(t.TempDir(), testLog, m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st.Backend()
}
