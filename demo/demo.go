// Package demo is `ldapgate demo`: the one-command way to see ldapgate work
// with no setup. It starts two helpers — an embedded directory
// (dc=example,dc=org on a free loopback port) and an upstream page that shows
// the identity headers it receives — writes a config for them, and runs the
// very same app.Run as `serve` with a temporary store. Nothing in the proxy,
// login path or syncer knows it is a demo.
package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ldapgate/ldapgate/app"
	"github.com/ldapgate/ldapgate/config"
)

// Password of every demo account.
const Password = "demo"

// Options configure the demo.
type Options struct {
	// Listen is the login page and proxy address (default 127.0.0.1:8080).
	Listen string
	// MetricsListen defaults to a free loopback port.
	MetricsListen string
	// Out receives the greeting with the login URL and accounts.
	Out io.Writer
	// Version is shown in logs.
	Version string
	// Ready, if set, is called once ldapgate serves (tests use it).
	Ready func(loginURL string)
}

const baseDN = "dc=example,dc=org"

// tree is the demo directory: alice (admins → admin), bob (staff → user),
// carol (staff, disabled with ppolicy's pwdAccountLockedTime as OpenLDAP
// marks it).
func tree() []*entry {
	user := func(uid, name, uuid string, extra map[string][]string) *entry {
		e := &entry{dn: "uid=" + uid + ",ou=users," + baseDN, attrs: map[string][]string{
			"objectclass": {"top", "person", "organizationalPerson", "inetOrgPerson"},
			"uid":         {uid},
			"cn":          {name},
			"sn":          {strings.Fields(name)[1]},
			"mail":        {uid + "@example.org"},
			"entryuuid":   {uuid},
		}}
		for k, v := range extra {
			e.attrs[k] = v
		}
		return e
	}
	group := func(cn string, members ...string) *entry {
		var dns []string
		for _, m := range members {
			dns = append(dns, "uid="+m+",ou=users,"+baseDN)
		}
		return &entry{dn: "cn=" + cn + ",ou=groups," + baseDN, attrs: map[string][]string{
			"objectclass": {"top", "groupOfNames"},
			"cn":          {cn},
			"member":      dns,
		}}
	}
	ou := func(name string) *entry {
		return &entry{dn: "ou=" + name + "," + baseDN, attrs: map[string][]string{
			"objectclass": {"top", "organizationalUnit"}, "ou": {name},
		}}
	}
	return []*entry{
		{dn: baseDN, attrs: map[string][]string{"objectclass": {"top", "domain"}, "dc": {"example"}}},
		ou("users"), ou("groups"),
		user("alice", "Alice Admin", "6f0c2a8e-1b1e-4f1a-9d7e-a11ce0000001", nil),
		user("bob", "Bob Builder", "6f0c2a8e-1b1e-4f1a-9d7e-b0b000000002", nil),
		user("carol", "Carol Locked", "6f0c2a8e-1b1e-4f1a-9d7e-ca7010000003",
			map[string][]string{"pwdaccountlockedtime": {"000001010000Z"}}),
		group("admins", "alice"),
		group("staff", "bob", "carol"),
	}
}

// Run starts the demo and blocks until ctx ends; everything it made
// (the store included) is removed on return.
func Run(ctx context.Context, o Options) error {
	if o.Listen == "" {
		o.Listen = "127.0.0.1:8080"
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	tmp, err := os.MkdirTemp("", "ldapgate-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	servicePassword := randomHex(16)
	serviceDN := "cn=ldapgate," + baseDN
	passwords := map[string]string{strings.ToLower(serviceDN): servicePassword}
	for _, u := range []string{"alice", "bob"} {
		passwords["uid="+u+",ou=users,"+baseDN] = Password
	}
	// carol has the demo password too, but is locked: the directory refuses
	// her bind as ppolicy would, and sync marks her blocked_in_ldap.
	dirServer, err := newLDAPServer(tree(), passwords, slog.Default())
	if err != nil {
		return err
	}
	ldapAddr, ldapDone, err := dirServer.serve("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer dirServer.stop()

	up, upAddr, err := startUpstream()
	if err != nil {
		return err
	}
	defer up.Close()

	metricsListen := o.MetricsListen
	if metricsListen == "" {
		metricsListen, err = freeAddr()
		if err != nil {
			return err
		}
	}
	adminToken := randomHex(32)
	tokenFile := filepath.Join(tmp, "admin_token")
	if err := os.WriteFile(tokenFile, []byte(adminToken+"\n"), 0o600); err != nil {
		return err
	}
	passFile := filepath.Join(tmp, "bind_password")
	if err := os.WriteFile(passFile, []byte(servicePassword), 0o600); err != nil {
		return err
	}
	cfgText := fmt.Sprintf(`listen: %q
metrics_listen: %q
upstream: "http://%s"
data_dir: %q
log_level: info
admin_token_file: %q
session: {secure_cookie: false}
directories:
  - name: demo
    type: ldap
    urls: ["ldap://%s"]
    base_dn: %q
    bind_dn: %q
    bind_password_file: %q
    users_dn: ou=users
    groups_dn: ou=groups
    role_mapping:
      admin: ["cn=admins,ou=groups,%[7]s"]
      user: ["cn=staff,ou=groups,%[7]s"]
    schedule: hourly
    note: embedded demo directory
`, o.Listen, metricsListen, upAddr, filepath.Join(tmp, "data"), tokenFile, ldapAddr, baseDN, serviceDN, passFile)
	cfgPath := filepath.Join(tmp, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		return err
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return fmt.Errorf("demo config: %w", err)
	}

	loginURL := "http://" + o.Listen + "/login"
	ready := func() {
		fmt.Fprintf(o.Out, `
ldapgate demo is running.

  Open:      http://%s/   (you will be sent to the login page)
  Accounts:  alice@example.org / demo   (admin: opens on the admin console)
             bob@example.org   / demo   (user: sees the platform page)
             carol@example.org / demo   (disabled in the directory: refused)
  Admin API: curl -H 'Authorization: Bearer %s' http://%s/auth/v4/user
  Metrics:   http://%s/metrics

Press Ctrl-C to stop; the temporary store is removed.
`, o.Listen, adminToken, o.Listen, metricsListen)
		if o.Ready != nil {
			o.Ready(loginURL)
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		errc <- app.Run(runCtx, cfg, app.Options{Version: o.Version, SyncAtStart: true, Ready: ready})
	}()
	select {
	case err := <-errc:
		return err
	case err := <-ldapDone:
		cancel()
		<-errc
		return fmt.Errorf("demo directory stopped: %w", err)
	}
}

// startUpstream serves the demo platform page: it shows the identity
// headers ldapgate sent, which is the whole point of the demo.
func startUpstream() (*http.Server, string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	srv := &http.Server{Handler: http.HandlerFunc(upstreamPage), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("demo upstream stopped", "err", err)
		}
	}()
	return srv, l.Addr().String(), nil
}

var page = template.Must(template.New("upstream").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Demo platform</title>
<style>body{font-family:sans-serif;max-width:48rem;margin:2rem auto}td{padding:.2rem .8rem;border-bottom:1px solid #ddd}</style></head>
<body><h1>Demo platform</h1>
<p>Signed in as <strong id="user">{{.User}}</strong> (role <span id="role">{{.Role}}</span>). Path: <code id="path">{{.Path}}</code></p>
<h2>Headers ldapgate sent</h2>
<table>{{range .Headers}}<tr><td>{{.Name}}</td><td>{{.Value}}</td></tr>{{end}}</table>
<p>{{if eq .Role "admin"}}<a id="console" href="/admin">Admin console</a>{{end}}</p>
<form method="post" action="/logout"><button id="logout" type="submit">Log out</button></form></body></html>`))

type header struct{ Name, Value string }

func upstreamPage(w http.ResponseWriter, r *http.Request) {
	// The demo opens on the admin console for an admin (alice); everyone
	// else, and an admin on any other path, sees the platform page.
	if r.URL.Path == "/" && r.Header.Get("X-Forwarded-Role") == "admin" {
		http.Redirect(w, r, "/admin", http.StatusFound)
		return
	}
	var hs []header
	for name, vals := range r.Header {
		if strings.HasPrefix(name, "X-Forwarded-") {
			hs = append(hs, header{name, strings.Join(vals, ", ")})
		}
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i].Name < hs[j].Name })
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = page.Execute(w, map[string]any{
		"User": r.Header.Get("X-Forwarded-User"), "Role": r.Header.Get("X-Forwarded-Role"),
		"Path": r.URL.RequestURI(), "Headers": hs,
	})
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
