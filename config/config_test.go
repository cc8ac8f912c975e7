package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// loadErrors parses src and returns its error lines; it fails the test when
// Parse returns anything but Errors.
func loadErrors(t *testing.T, src, path string) []string {
	t.Helper()
	cfg, err := Parse([]byte(src), path)
	if err == nil {
		if cfg == nil {
			t.Fatal("Parse returned neither a config nor an error")
		}
		return nil
	}
	if cfg != nil {
		t.Fatal("Parse returned a config together with an error")
	}
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %v (%T) is not config.Errors", err, err)
	}
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = e.Error()
	}
	return out
}

func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	cfg, err := Parse([]byte(src), filepath.Join(t.TempDir(), "config.yaml"))
	if err != nil {
		t.Fatalf("Parse:\n%v", err)
	}
	return cfg
}

const hashArgon = "$argon2id$v=19$m=65536,t=3,p=4$6i1Nez3ZPJjEdaIRnLWD7Q$+bOhilfR85iaHLAufy+i7Ebm2sFKcD9vbdzE8LQFKbo"
const hashBcrypt = "$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"

func TestValidationErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{
			name: "unknown directory type",
			src: `upstream: http://127.0.0.1:3000
directories:
  - name: corp
    urls: [ldap://127.0.0.1:389]
    base_dn: dc=example,dc=com
    type: bogus
`,
			want: []string{`directories[0].type: unknown type "bogus" (line 6)`},
		},
		{
			name: "unknown key with suggestion",
			src: `upstream: http://127.0.0.1:3000
directories:
  - name: corp
    type: ldap
    urls: [ldap://127.0.0.1:389]
    base_dn: dc=example,dc=com
    bind_dn: cn=svc,dc=example,dc=com
    bind_pasword: x
    bind_password: y
`,
			want: []string{`directories[0].bind_pasword: unknown key, did you mean bind_password? (line 8)`},
		},
		{
			name: "unknown top-level key, no close match",
			src: `upstream: http://127.0.0.1:3000
frobnicate: true
`,
			want: []string{`frobnicate: unknown key (line 2)`},
		},
		{
			name: "duplicate key",
			src: `upstream: http://127.0.0.1:3000
listen: ":8080"
listen: ":8081"
`,
			want: []string{`listen: duplicate key (first set on line 2) (line 3)`},
		},
		{
			name: "store backend unknown",
			src: `upstream: http://127.0.0.1:3000
store:
  backend: redis
`,
			want: []string{`store.backend: unknown backend "redis" (want badger or postgres) (line 3)`},
		},
		{
			name: "store postgres without dsn_file",
			src: `upstream: http://127.0.0.1:3000
store:
  backend: postgres
`,
			want: []string{`store.postgres.dsn_file: required with store.backend postgres (line 2)`},
		},
		{
			name: "store postgres dsn_file unreadable",
			src: `upstream: http://127.0.0.1:3000
store:
  backend: postgres
  postgres:
    dsn_file: /nonexistent/pg_dsn
`,
			want: []string{`store.postgres.dsn_file: cannot read /nonexistent/pg_dsn: no such file or directory (line 5)`},
		},
		{
			name: "missing upstream, empty file",
			src:  ``,
			want: []string{`upstream: required (the platform's base URL, e.g. http://127.0.0.1:3000)`},
		},
		{
			name: "top level",
			src: `listen: "8080"
metrics_listen: ":99999"
upstream: ftp://example.com
log_level: loud
roles: [admin, admin, "bad role"]
`,
			want: []string{
				`listen: "8080" is not host:port (e.g. ":8080" or "127.0.0.1:8080") (line 1)`,
				`metrics_listen: ":99999": port must be 1-65535 (line 2)`,
				`upstream: "ftp://example.com": want an absolute http:// or https:// URL (line 3)`,
				`log_level: unknown level "loud" (want debug, info, warn or error) (line 4)`,
				`roles[1]: duplicate role "admin" (line 5)`,
				`roles[2]: invalid role name "bad role" (letters, digits, _ . - only: it is sent in a header) (line 5)`,
			},
		},
		{
			name: "relative upstream",
			src:  "upstream: /app\n",
			want: []string{`upstream: "/app": want an absolute http:// or https:// URL (line 1)`},
		},
		{
			name: "same listen and metrics",
			src:  "upstream: http://a\nlisten: \":8080\"\nmetrics_listen: \":8080\"\n",
			want: []string{`metrics_listen: same address as listen ":8080"; /metrics must be served apart (line 3)`},
		},
		{
			name: "session and login",
			src: `upstream: http://127.0.0.1:3000
session:
  ttl: 1h
  idle_timeout: 2h
  cookie_name: "bad cookie"
  max_per_user: -2
login:
  max_failures: -1
  window: -5m
  max_failures_per_user: -3
`,
			want: []string{
				`session.idle_timeout: 2h0m0s is longer than session.ttl 1h0m0s (line 4)`,
				`session.cookie_name: "bad cookie" is not a valid cookie name (line 5)`,
				`session.max_per_user: must be 0 (default 20) or more, got -2 (line 6)`,
				`login.max_failures: must be 0 (default 5) or more, got -1 (line 8)`,
				`login.window: must be positive, got -5m0s (line 9)`,
				`login.max_failures_per_user: must be 0 (default 50) or more, got -3 (line 10)`,
			},
		},
		{
			name: "server limits",
			src: `upstream: http://127.0.0.1:3000
server:
  read_header_timeout: -1s
  idle_timeout: -2s
  max_conns: -1
  max_conns_per_ip: -5
`,
			want: []string{
				`server.read_header_timeout: must be positive, got -1s (line 3)`,
				`server.idle_timeout: must be positive, got -2s (line 4)`,
				`server.max_conns: must be 0 (default 10000) or more, got -1 (line 5)`,
				`server.max_conns_per_ip: must be 0 (default 500) or more, got -5 (line 6)`,
			},
		},
		{
			name: "type errors",
			src: `upstream: http://127.0.0.1:3000
session: {ttl: forever}
login: {max_failures: 1.5, max_failures_per_address: many}
roles: admin
headers: [a, b]
`,
			want: []string{
				`session.ttl: invalid duration "forever" (write e.g. 30s, 5m, 1h30m) (line 2)`,
				`login.max_failures: want an integer, got "1.5" (line 3)`,
				`login.max_failures_per_address: want an integer, got "many" (line 3)`,
				`roles: want a list, got "admin" (line 4)`,
				`headers: want a mapping (key: value), got a list (line 5)`,
			},
		},
		{
			name: "forward-auth hosts",
			src: `upstream: http://127.0.0.1:3000
session: {cookie_domain: "https://example.com"}
login:
  redirect_hosts: ["app.example.com", "app.example.com:8443", "https://evil.example", "a.example/x", "a@b", "h:port"]
`,
			want: []string{
				`session.cookie_domain: "https://example.com" is not a domain name (line 2)`,
				`login.redirect_hosts[2]: "https://evil.example" is not a host or host:port (no scheme, no path) (line 4)`,
				`login.redirect_hosts[3]: "a.example/x" is not a host or host:port (no scheme, no path) (line 4)`,
				`login.redirect_hosts[4]: "a@b" is not a host or host:port (no scheme, no path) (line 4)`,
				`login.redirect_hosts[5]: "h:port" is not a host or host:port (no scheme, no path) (line 4)`,
			},
		},
		{
			name: "trusted proxies",
			src: `upstream: http://127.0.0.1:3000
trusted_proxies:
  - 0.0.0.0/0
  - ::/0
  - 10.0.0.1
  - 10.1.2.3/8
  - banana
  - 192.168.0.0/16
`,
			want: []string{
				`trusted_proxies[0]: "0.0.0.0/0" trusts every address: any client could forge X-Forwarded-For and dodge the per-address login limit; list your proxies' networks (line 3)`,
				`trusted_proxies[1]: "::/0" trusts every address: any client could forge X-Forwarded-For and dodge the per-address login limit; list your proxies' networks (line 4)`,
				`trusted_proxies[2]: "10.0.0.1" is an address, not a CIDR (write 10.0.0.1/32 or /128 for one host) (line 5)`,
				`trusted_proxies[3]: "10.1.2.3/8" has host bits set (did you mean 10.0.0.0/8?) (line 6)`,
				`trusted_proxies[4]: "banana" is not a CIDR (e.g. 10.0.0.0/8) (line 7)`,
			},
		},
		{
			name: "headers and public paths",
			src: `upstream: http://127.0.0.1:3000
headers:
  user: "X Forwarded User"
  email: X-Auth
  role: x_auth
public_paths: ["/static/", "static/"]
`,
			want: []string{
				`headers.user: "X Forwarded User" is not a valid HTTP header name (line 3)`,
				`headers.role: same header as headers.email ("x_auth") (line 5)`,
				`public_paths[1]: "static/" must start with / (line 6)`,
			},
		},
		{
			name: "local users",
			src: `upstream: http://127.0.0.1:3000
local_users:
  - username: root@local
    password_hash: "` + hashArgon + `"
    role: admin
  - username: ROOT@local
    password_hash: "` + hashBcrypt + `"
    role: superuser
  - password_hash: "plaintext-oops"
    role: user
  - username: bob
    role: user
`,
			want: []string{
				`local_users[1].username: duplicate local user "ROOT@local" (also local_users[0]) (line 6)`,
				`local_users[1].role: unknown role "superuser" (roles: admin, advanced_user, user) (line 8)`,
				`local_users[2].username: required (line 9)`,
				`local_users[2].password_hash: not an argon2id ($argon2id$...) or bcrypt ($2a$, $2b$, $2y$) hash (line 9)`,
				`local_users[3].password_hash: required (line 11)`,
			},
		},
		{
			name: "directory: every field wrong",
			src: `upstream: http://127.0.0.1:3000
directories:
  - name: "42"
    type: active_directory
    urls: ["http://dc1", "ldaps://:636", "ldap://dc1/dc=x"]
    start_tls: true
    base_dn: "dc=example,,dc=com"
    bind_dn: "cn=svc"
    users_dn: "users"
    user_filter: "(uid=foo"
    group_name_attribute: member
    naming: upn
    role_mapping:
      admin: ["not a dn"]
      root: ["cn=x,dc=example,dc=com"]
    default_role: guest
    schedule: "daily 25:00"
    max_block_fraction: 1.5
    page_size: -3
    pool_size: -1
    timeout: -1s
    live_interval: 500ms
`,
			want: []string{
				`directories[0].name: "42" must not be a number (a number is read as a directory id) (line 3)`,
				`directories[0].urls[0]: "http://dc1": scheme must be ldap:// or ldaps:// (line 5)`,
				`directories[0].urls[1]: "ldaps://:636" is ldaps:// but start_tls is true: StartTLS is for ldap:// only (line 5)`,
				`directories[0].urls[1]: "ldaps://:636" has no host (line 5)`,
				`directories[0].urls[2]: "ldap://dc1/dc=x": only scheme://host:port is used; put the base DN in base_dn (line 5)`,
				`directories[0].base_dn: invalid DN "dc=example,,dc=com": incomplete type, value pair (line 7)`,
				`directories[0].bind_password: bind_dn is set but no bind_password or bind_password_file (line 8)`,
				`directories[0].users_dn: invalid DN "users": DN ended with incomplete type, value pair (line 9)`,
				`directories[0].user_filter: invalid LDAP filter "(uid=foo": ldap: unexpected end of filter (line 10)`,
				`directories[0].group_name_attribute: "member": want cn (read groups and their members) or memberOf (read each user's memberOf) (line 11)`,
				`directories[0].naming: unknown naming "upn" (want username_at_domain or email) (line 12)`,
				`directories[0].role_mapping.admin[0]: invalid DN "not a dn": DN ended with incomplete type, value pair (line 14)`,
				`directories[0].role_mapping.root: unknown role "root" (roles: admin, advanced_user, user) (line 15)`,
				`directories[0].default_role: unknown role "guest" (roles: admin, advanced_user, user) (line 16)`,
				`directories[0].schedule: invalid schedule "daily 25:00": time "25:00": want HH:MM between 00:00 and 23:59 (line 17)`,
				`directories[0].max_block_fraction: must be between 0 and 1, got 1.5 (line 18)`,
				`directories[0].page_size: must be between 1 and 10000 (0 = default 500), got -3 (line 19)`,
				`directories[0].pool_size: must be between 1 and 256 (0 = default 4), got -1 (line 20)`,
				`directories[0].timeout: must be positive, got -1s (line 21)`,
				`directories[0].live_interval: must be at least 1s, got 500ms (line 22)`,
			},
		},
		{
			name: "directory: missing required keys reported on the entry's line",
			src: `upstream: http://127.0.0.1:3000
directories:
  - note: nothing else
  - name: ou-only
    type: freeipa
    urls: [ldaps://ipa.example.com]
    base_dn: "ou=people,o=corp"
    auto_sync: true
`,
			want: []string{
				`directories[0].name: required (line 3)`,
				`directories[0].type: required (ldap, active_directory or freeipa) (line 3)`,
				`directories[0].urls: at least one ldap:// or ldaps:// URL is required (line 3)`,
				`directories[0].base_dn: required (line 3)`,
				`directories[1].domain: base_dn "ou=people,o=corp" has no dc= parts to derive the login domain from; set domain (line 7)`,
			},
		},
		{
			name: "duplicate directory names, case-insensitive",
			src: `upstream: http://127.0.0.1:3000
directories:
  - {name: Corp, type: ldap, urls: ["ldap://a"], base_dn: "dc=a,dc=com"}
  - {name: corp, type: ldap, urls: ["ldap://b"], base_dn: "dc=b,dc=com"}
`,
			want: []string{`directories[1].name: duplicate directory name "corp" (also directories[0]; names compare case-insensitively) (line 4)`},
		},
		{
			name: "bad domain override",
			src: `upstream: http://127.0.0.1:3000
directories:
  - {name: a, type: ldap, urls: ["ldap://a"], base_dn: "o=x", domain: "bad domain!"}
`,
			want: []string{`directories[0].domain: "bad domain!" is not a domain name (line 3)`},
		},
		{
			name: "yaml syntax error",
			src:  "upstream: http://a\ndirectories:\n  - name: [unclosed\n",
			want: []string{`invalid YAML: did not find expected ',' or ']' (line 3)`},
		},
		{
			name: "two documents",
			src:  "upstream: http://a\n---\nupstream: http://b\n",
			want: []string{`more than one YAML document (---): put everything in one (line 2)`},
		},
		{
			name: "root is a list",
			src:  "- a\n- b\n",
			want: []string{`the file must be a mapping (key: value), got a list (line 1)`},
		},
		{
			name: "bind password inline and from file",
			src: `upstream: http://127.0.0.1:3000
directories:
  - name: a
    type: ldap
    urls: ["ldap://a"]
    base_dn: "dc=a,dc=com"
    bind_dn: "cn=svc,dc=a,dc=com"
    bind_password: inline
    bind_password_file: /nonexistent/pw
`,
			want: []string{`directories[0].bind_password: set both bind_password and bind_password_file; keep one (line 8)`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := loadErrors(t, tt.src, "config.yaml")
			if !slices.Equal(got, tt.want) {
				t.Errorf("errors:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

// The password hash is a secret too: an error about it must not print it.
func TestHashNeverPrinted(t *testing.T) {
	const weird = "$argon2id$broken-but-secret-looking"
	src := "upstream: http://a\nlocal_users:\n  - {username: a, role: admin, password_hash: \"" + weird + "\"}\n"
	got := strings.Join(loadErrors(t, src, ""), "\n")
	if got == "" {
		t.Fatal("a malformed hash was accepted")
	}
	if strings.Contains(got, "broken-but-secret") {
		t.Fatalf("error prints the hash: %s", got)
	}
}

func TestErrorsFormat(t *testing.T) {
	es := Errors{
		{Path: "directories[0].type", Line: 6, Msg: `unknown type "bogus"`},
		{Path: "upstream", Msg: "required"},
		{Line: 3, Msg: "invalid YAML: x"},
	}
	want := "directories[0].type: unknown type \"bogus\" (line 6)\nupstream: required\ninvalid YAML: x (line 3)"
	if es.Error() != want {
		t.Fatalf("Error() = %q, want %q", es.Error(), want)
	}
	if Errors(nil).Err() != nil {
		t.Fatal("empty Errors.Err() is not nil")
	}
	if es.Err() == nil {
		t.Fatal("non-empty Errors.Err() is nil")
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load of a missing file: %v, want os.ErrNotExist", err)
	}
}

func TestExampleLoadsClean(t *testing.T) {
	t.Setenv("LDAPGATE_DATA_DIR", "")
	cfg, err := Load("../config.example.yaml")
	if err != nil {
		t.Fatalf("config.example.yaml:\n%v", err)
	}
	if w := cfg.Warnings(); len(w) != 0 {
		t.Fatalf("config.example.yaml has warnings: %v", Errors(w))
	}
	d := cfg.Directories[0]
	checks := []struct{ name, got, want string }{
		{"data_dir", cfg.DataDir, "/var/lib/ldapgate"},
		{"domain", d.DomainName(), "example.com"},
		{"users base", d.UsersBase(), "ou=users,dc=example,dc=com"},
		{"groups base", d.GroupsBase(), "ou=groups,dc=example,dc=com"},
		{"bind password", d.BindPassword.Reveal(), "example-bind-password-REPLACE-ME"},
		{"admin token", cfg.AdminToken.Reveal(), "example-admin-token-REPLACE-ME-0123456789"},
		{"managed", d.Managed, ManagedConfig},
		{"schedule", d.Schedule, "daily 03:00"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if !filepath.IsAbs(d.BindPasswordFile) || !filepath.IsAbs(cfg.AdminTokenFile) {
		t.Errorf("relative secret paths not resolved: %q, %q", d.BindPasswordFile, cfg.AdminTokenFile)
	}
	if !d.AutoSyncEnabled() || d.BlockFraction() != 0.2 || !cfg.SecureCookie() {
		t.Errorf("auto_sync %v, fraction %v, secure cookie %v", d.AutoSyncEnabled(), d.BlockFraction(), cfg.SecureCookie())
	}
}

func TestEnvExpansion(t *testing.T) {
	t.Setenv("LG_UPSTREAM", "http://10.0.0.5:3000")
	t.Setenv("LG_PAGE", "250")
	t.Setenv("LG_EMPTY", "")
	t.Setenv("LG_PW", "pa: ss # not a comment")
	src := `upstream: ${LG_UPSTREAM}
data_dir: "${LG_DATA:-/srv/ldapgate}"
log_level: ${LG_EMPTY:-debug}
public_paths: ["/cost$$/", "/a$b/"]
directories:
  - name: corp
    type: ldap
    urls: ["ldap://127.0.0.1"]
    base_dn: dc=example,dc=com
    bind_dn: cn=svc,dc=example,dc=com
    bind_password: ${LG_PW}
    page_size: ${LG_PAGE}
`
	cfg := mustParse(t, src)
	d := cfg.Directories[0]
	if cfg.Upstream != "http://10.0.0.5:3000" || cfg.DataDir != "/srv/ldapgate" || cfg.LogLevel != "debug" {
		t.Errorf("upstream %q, data_dir %q, log_level %q", cfg.Upstream, cfg.DataDir, cfg.LogLevel)
	}
	if !slices.Equal(cfg.PublicPaths, []string{"/cost$/", "/a$b/"}) {
		t.Errorf("public_paths %q: $$ must be $ and a lone $ kept", cfg.PublicPaths)
	}
	// The variable's content is data, never YAML: ": " and "#" survive.
	if d.BindPassword.Reveal() != "pa: ss # not a comment" {
		t.Errorf("bind_password = %q", d.BindPassword.Reveal())
	}
	if d.PageSize != 250 {
		t.Errorf("page_size = %d, want 250 (an unquoted ${VAR} is re-typed)", d.PageSize)
	}

	// Env content is data even when it looks like YAML's null.
	for _, v := range []string{"null", "~", "true", "0x1F"} {
		t.Setenv("LG_PW", v)
		if got := mustParse(t, src).Directories[0].BindPassword.Reveal(); got != v {
			t.Errorf("bind_password from env %q = %q", v, got)
		}
	}

	errs := loadErrors(t, "upstream: http://a\nlog_level: ${LG_SURELY_UNSET_VAR}\ndata_dir: ${bad-name}\nlisten: ${OPEN\n", "")
	want := []string{
		`log_level: environment variable LG_SURELY_UNSET_VAR is not set (write ${LG_SURELY_UNSET_VAR:-default} for a fallback) (line 2)`,
		`data_dir: invalid variable name "bad-name" in ${bad-name} (write $$ for a literal $) (line 3)`,
		`listen: unterminated ${ (write $$ for a literal $) (line 4)`,
	}
	if !slices.Equal(errs, want) {
		t.Errorf("errors:\n  %s\nwant:\n  %s", strings.Join(errs, "\n  "), strings.Join(want, "\n  "))
	}
}

// An env var expanded inside a comment must not matter (SPEC §8's own
// example carries "# or bind_password: ${LDAP_BIND_PASSWORD}").
func TestEnvNotExpandedInComments(t *testing.T) {
	mustParse(t, "upstream: http://a # ${LG_SURELY_UNSET_VAR}\n# ${ALSO_UNSET}\n")
}

func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("token", "0123456789abcdef0123\n")
	write("bind", "s3cret \n\n") // only one newline is trimmed
	write("bind_crlf", "winpass\r\n")
	write("empty", "")
	write("short", "abc\n")
	src := `upstream: http://a
admin_token_file: token
directories:
  - {name: a, type: ldap, urls: ["ldap://a"], base_dn: "dc=a", bind_dn: "cn=s,dc=a", bind_password_file: bind}
  - {name: b, type: ldap, urls: ["ldap://b"], base_dn: "dc=b", bind_dn: "cn=s,dc=b", bind_password_file: ` + filepath.Join(dir, "bind_crlf") + `}
`
	cfgPath := filepath.Join(dir, "config.yaml")
	cfg, err := Parse([]byte(src), cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.AdminToken.Reveal(); got != "0123456789abcdef0123" {
		t.Errorf("admin token %q", got)
	}
	if got := cfg.Directories[0].BindPassword.Reveal(); got != "s3cret \n" {
		t.Errorf("bind password %q, want one newline trimmed", got)
	}
	if got := cfg.Directories[1].BindPassword.Reveal(); got != "winpass" {
		t.Errorf("bind password %q, want CRLF trimmed", got)
	}
	if cfg.Directories[0].BindPasswordFile != filepath.Join(dir, "bind") {
		t.Errorf("bind_password_file %q not resolved against the config's directory", cfg.Directories[0].BindPasswordFile)
	}

	bad := `upstream: http://a
admin_token_file: short
directories:
  - name: a
    type: ldap
    urls: ["ldap://a"]
    base_dn: "dc=a"
    bind_dn: "cn=s,dc=a"
    bind_password_file: missing
  - {name: b, type: ldap, urls: ["ldap://b"], base_dn: "dc=b", bind_dn: "cn=s,dc=b", bind_password_file: empty}
  - {name: c, type: ldap, urls: ["ldap://c"], base_dn: "dc=c", tls: {ca_file: token}}
`
	got := loadErrors(t, bad, cfgPath)
	want := []string{
		`admin_token_file: admin token is 3 characters long; use at least 16 (e.g. openssl rand -hex 32) (line 2)`,
		`directories[0].bind_password_file: cannot read ` + filepath.Join(dir, "missing") + `: no such file or directory (line 9)`,
		`directories[1].bind_password_file: ` + filepath.Join(dir, "empty") + ` is empty (line 10)`,
		`directories[2].tls.ca_file: ` + filepath.Join(dir, "token") + ` holds no PEM certificate (line 11)`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("errors:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if strings.Contains(strings.Join(got, ""), "abc") {
		t.Error("an error prints the short token's value")
	}
}

func TestDefaults(t *testing.T) {
	cfg := mustParse(t, `upstream: http://a
directories:
  - {name: l, type: ldap, urls: ["ldap://a"], base_dn: "dc=example,dc=org"}
  - {name: ad, type: active_directory, urls: ["ldaps://dc"], base_dn: "DC=Corp,DC=Example,DC=COM", page_size: 5000, schedule: hourly}
  - {name: ipa, type: freeipa, urls: ["ldaps://ipa"], base_dn: "dc=ipa,dc=test", schedule: "weekly sun 02:00", auto_sync: false}
`)
	if cfg.Listen != ":8080" || cfg.MetricsListen != ":9090" || cfg.DataDir != "/var/lib/ldapgate" || cfg.LogLevel != "info" {
		t.Errorf("top-level defaults: %q %q %q %q", cfg.Listen, cfg.MetricsListen, cfg.DataDir, cfg.LogLevel)
	}
	if !slices.Equal(cfg.Roles, []string{"admin", "advanced_user", "user"}) {
		t.Errorf("roles %v", cfg.Roles)
	}
	s, l, h := cfg.Session, cfg.Login, cfg.Headers
	if s.TTL.D() != 12*time.Hour || s.IdleTimeout.D() != time.Hour || s.CookieName != "ldapgate_session" || !cfg.SecureCookie() {
		t.Errorf("session defaults %+v", s)
	}
	if l.MaxFailures != 5 || l.MaxFailuresPerAddress != 50 || l.Window.D() != 5*time.Minute {
		t.Errorf("login defaults %+v", l)
	}
	if sv := cfg.Server; sv != (Server{Duration(10 * time.Second), Duration(90 * time.Second), 10000, 500}) {
		t.Errorf("server defaults %+v", sv)
	}
	if h != (Headers{"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Role", "X-Forwarded-Groups"}) {
		t.Errorf("headers %+v", h)
	}

	type row struct {
		user, uuid, display, userF, groupF, groupAttr, usersBase, groupsBase, domain string
		page                                                                         int
		auto                                                                         bool
	}
	want := []row{
		{"uid", "entryUUID", "cn", "(objectClass=person)",
			"(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))", "cn",
			"dc=example,dc=org", "dc=example,dc=org", "example.org", 500, false},
		{"sAMAccountName", "objectGUID", "displayName", "(&(objectCategory=person)(objectClass=user))",
			"(objectClass=group)", "cn",
			"DC=Corp,DC=Example,DC=COM", "DC=Corp,DC=Example,DC=COM", "corp.example.com", 1000, true},
		{"uid", "ipaUniqueID", "cn", "(objectClass=person)", "(objectClass=groupOfNames)", "memberOf",
			"cn=users,cn=accounts,dc=ipa,dc=test", "cn=groups,cn=accounts,dc=ipa,dc=test", "ipa.test", 500, false},
	}
	for i, w := range want {
		d := cfg.Directories[i]
		got := row{d.UsernameAttribute, d.UUIDAttribute, d.DisplayNameAttribute, d.UserObjectFilter, d.GroupObjectFilter,
			d.GroupNameAttribute, d.UsersBase(), d.GroupsBase(), d.DomainName(), d.PageSize, d.AutoSyncEnabled()}
		if got != w {
			t.Errorf("%s:\n got %+v\nwant %+v", d.Type, got, w)
		}
		if d.EmailAttribute != "mail" || d.Naming != NamingUsernameAtDomain || d.ConnectTimeout.D() != 5*time.Second ||
			d.Timeout.D() != 30*time.Second || d.PoolSize != 4 || d.BlockFraction() != 0.2 || d.Managed != ManagedConfig {
			t.Errorf("%s: common defaults %+v", d.Type, d)
		}
	}

	// Idempotent: a second pass changes nothing.
	again := *cfg
	again.Directories = slices.Clone(cfg.Directories)
	again.ApplyDefaults()
	if fmt.Sprintf("%+v", again) != fmt.Sprintf("%+v", *cfg) {
		t.Error("ApplyDefaults is not idempotent")
	}
	// Explicit values are kept.
	d := Directory{Type: TypeActiveDirectory, UsernameAttribute: "userPrincipalName", PageSize: 200}
	zero := 0.0
	d.MaxBlockFraction = &zero
	d.ApplyDefaults()
	if d.UsernameAttribute != "userPrincipalName" || d.PageSize != 200 || d.BlockFraction() != 0 || d.UUIDAttribute != "objectGUID" {
		t.Errorf("explicit values overwritten: %+v", d)
	}
	// An unknown type is not guessed.
	u := Directory{Type: "bogus"}
	u.ApplyDefaults()
	if u.UsernameAttribute != "" || u.Type != "bogus" {
		t.Errorf("unknown type got preset values: %+v", u)
	}
}

func TestDirectoryMethods(t *testing.T) {
	tests := []struct {
		d                     Directory
		domain, users, groups string
	}{
		{Directory{BaseDN: "dc=example,dc=com"}, "example.com", "dc=example,dc=com", "dc=example,dc=com"},
		{Directory{BaseDN: "ou=corp,DC=Example,DC=Com", UsersDN: "OU=People"}, "example.com", "OU=People,ou=corp,DC=Example,DC=Com", "ou=corp,DC=Example,DC=Com"},
		{Directory{BaseDN: "dc=example,dc=com", Domain: "Corp.Example.COM", GroupsDN: "ou=g"}, "corp.example.com", "dc=example,dc=com", "ou=g,dc=example,dc=com"},
		{Directory{BaseDN: "o=acme"}, "", "o=acme", "o=acme"},
		{Directory{BaseDN: "not a dn"}, "", "not a dn", "not a dn"},
		{Directory{UsersDN: "ou=u"}, "", "ou=u", ""},
	}
	for _, tt := range tests {
		if got := tt.d.DomainName(); got != tt.domain {
			t.Errorf("%+v DomainName = %q, want %q", tt.d, got, tt.domain)
		}
		if got := tt.d.UsersBase(); got != tt.users {
			t.Errorf("%+v UsersBase = %q, want %q", tt.d, got, tt.users)
		}
		if got := tt.d.GroupsBase(); got != tt.groups {
			t.Errorf("%+v GroupsBase = %q, want %q", tt.d, got, tt.groups)
		}
	}
	on, off := true, false
	for _, tt := range []struct {
		sched string
		auto  *bool
		want  bool
	}{{"", nil, false}, {"", &on, false}, {"hourly", nil, true}, {"hourly", &on, true}, {"hourly", &off, false}} {
		d := Directory{Schedule: tt.sched, AutoSync: tt.auto}
		if got := d.AutoSyncEnabled(); got != tt.want {
			t.Errorf("schedule %q auto %v: AutoSyncEnabled = %v", tt.sched, tt.auto, got)
		}
	}
	if (&Config{Session: Session{SecureCookie: &off}}).SecureCookie() {
		t.Error("secure_cookie: false ignored")
	}
	if !(&Config{}).SecureCookie() {
		t.Error("SecureCookie default is not true")
	}
}

func TestDirectoryValidateAPI(t *testing.T) {
	var d Directory
	if err := json.Unmarshal([]byte(`{"name":"hq","type":"active_directory","urls":["ldaps://dc1.hq.example"],
		"base_dn":"DC=hq,DC=example","bind_dn":"CN=svc,DC=hq,DC=example","bind_password":"pw","timeout":"10s","schedule":"15 10 * * * 0"}`), &d); err != nil {
		t.Fatal(err)
	}
	d.ApplyDefaults()
	if errs := d.Validate(DefaultRoles()); len(errs) != 0 {
		t.Fatalf("valid API directory: %v", errs)
	}
	if d.Timeout.D() != 10*time.Second {
		t.Errorf("timeout %v", d.Timeout)
	}
	d.Type = "bogus"
	d.DefaultRole = "guest"
	got := d.Validate(DefaultRoles())
	want := Errors{
		{Path: "directory.type", Msg: `unknown type "bogus"`},
		{Path: "directory.default_role", Msg: `unknown role "guest" (roles: admin, advanced_user, user)`},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	if got := d.ValidateAt("", DefaultRoles()); len(got) == 0 || got[0].Path != "type" {
		t.Errorf("ValidateAt(\"\") paths: %v", got)
	}
}

func TestWarnings(t *testing.T) {
	cfg := mustParse(t, `upstream: http://a
session: {secure_cookie: false}
directories:
  - {name: c, type: ldap, urls: ["ldaps://c"], base_dn: "dc=c,dc=com", auto_sync: true}
  - {name: a, type: ldap, urls: ["ldaps://a"], base_dn: "dc=example,dc=com"}
  - {name: b, type: ldap, urls: ["ldap://b.example.com"], base_dn: "ou=x,dc=example,dc=com", tls: {insecure_skip_verify: true}}
`)
	var got []string
	for _, w := range cfg.Warnings() {
		got = append(got, w.Error())
	}
	want := []string{
		`session.secure_cookie: false: the session cookie is also sent over plain HTTP; use only for local tests (line 2)`,
		`directories[0].auto_sync: true but no schedule is set: nothing runs automatically (line 4)`,
		`directories[2].domain: login domain "example.com" is also the domain of directories[1] (a): username@example.com logins are ambiguous (400) and must name the directory (line 6)`,
		`directories[2].tls.insecure_skip_verify: certificate verification is off: anyone on the path can read bind passwords; set tls.ca_file instead (line 6)`,
		`directories[2].urls[0]: "ldap://b.example.com" without start_tls sends passwords in clear text (line 6)`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("warnings:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestMergeKeysAndAliases(t *testing.T) {
	cfg := mustParse(t, `upstream: http://a
x-common: &common
  type: active_directory
  urls: ["ldaps://dc.example.com"]
  base_dn: "dc=example,dc=com"
directories:
  - <<: *common
    name: one
    users_dn: ou=one
  - <<: *common
    name: two
    type: ldap
`)
	one, two := cfg.Directories[0], cfg.Directories[1]
	if one.Type != TypeActiveDirectory || one.UsersDN != "ou=one" || one.URLs[0] != "ldaps://dc.example.com" || one.UsernameAttribute != "sAMAccountName" {
		t.Errorf("merged directory one: %+v", one)
	}
	if two.Type != TypeLDAP || two.BaseDN != "dc=example,dc=com" || two.UsernameAttribute != "uid" {
		t.Errorf("directory two: own key must win over the merged one: %+v", two)
	}
}

func TestRedaction(t *testing.T) {
	const pw = "hunter2-bind-secret"
	const tok = "admin-token-0123456789-secret"
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tok"), []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LG_BIND_PW", pw)
	src := `upstream: http://a
admin_token_file: tok
local_users:
  - {username: root@local, role: admin, password_hash: "` + hashArgon + `"}
directories:
  - name: corp
    type: ldap
    urls: ["ldaps://a"]
    base_dn: dc=example,dc=com
    bind_dn: cn=svc,dc=example,dc=com
    bind_password: ${LG_BIND_PW}
`
	cfg, err := Parse([]byte(src), filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Directories[0].BindPassword.Reveal() != pw || cfg.AdminToken.Reveal() != tok {
		t.Fatal("secrets not loaded")
	}

	var logBuf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	log.Info("config", "config", cfg)
	log.Info("config value", "config", *cfg)
	log.Info("directory", "dir", cfg.Directories[0], "users", cfg.LocalUsers)
	yamlOut, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	jsonOut, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{
		"slog":    logBuf.String(),
		"%v":      fmt.Sprintf("%v", cfg),
		"%+v":     fmt.Sprintf("%+v", *cfg),
		"%#v":     fmt.Sprintf("%#v", *cfg),
		"dirs %v": fmt.Sprintf("%v", cfg.Directories),
		"dir %v":  fmt.Sprintf("%v %+v", cfg.Directories[0], cfg.LocalUsers),
		"yaml":    string(yamlOut),
		"json":    string(jsonOut),
		"err":     Errors{{Path: "x", Msg: fmt.Sprint(cfg.Directories[0].BindPassword)}}.Error(),
	}
	hashSecret := hashArgon[strings.LastIndexByte(hashArgon, '$')+1:]
	for name, out := range outputs {
		for _, secret := range []string{pw, tok, hashSecret} {
			if strings.Contains(out, secret) {
				t.Errorf("%s output contains a secret:\n%s", name, out)
			}
		}
	}
	if !strings.Contains(logBuf.String(), `"bind_password_set":true`) || !strings.Contains(logBuf.String(), `"admin_token_set":true`) {
		t.Errorf("slog output lacks the set/unset flags:\n%s", logBuf.String())
	}
	if !strings.Contains(outputs["%+v"], "[REDACTED]") {
		t.Errorf("%%+v does not show the placeholder:\n%s", outputs["%+v"])
	}

	r := cfg.Redacted()
	if r.AdminToken.IsSet() || r.Directories[0].BindPassword.IsSet() || r.LocalUsers[0].PasswordHash.IsSet() {
		t.Error("Redacted kept a secret")
	}
	if !cfg.Directories[0].BindPassword.IsSet() || !cfg.LocalUsers[0].PasswordHash.IsSet() {
		t.Error("Redacted changed the original")
	}
}

func TestDurationCodec(t *testing.T) {
	for _, s := range []string{"5m", "12h", "1h30m", "250ms"} {
		want, _ := time.ParseDuration(s)
		var d Duration
		if err := json.Unmarshal([]byte(`"`+s+`"`), &d); err != nil || d.D() != want {
			t.Errorf("json %q: %v %v", s, d, err)
		}
		var y struct{ D Duration }
		if err := yaml.Unmarshal([]byte("d: "+s), &y); err != nil || y.D.D() != want {
			t.Errorf("yaml %q: %v %v", s, y.D, err)
		}
		b, _ := json.Marshal(d)
		var back Duration
		if err := json.Unmarshal(b, &back); err != nil || back != d {
			t.Errorf("json round trip of %s via %s: %v %v", s, b, back, err)
		}
		yb, _ := yaml.Marshal(y)
		var yback struct{ D Duration }
		if err := yaml.Unmarshal(yb, &yback); err != nil || yback.D != d {
			t.Errorf("yaml round trip of %s via %s: %v %v", s, yb, yback.D, err)
		}
	}
	if b, _ := json.Marshal(Duration(90 * time.Minute)); string(b) != `"1h30m0s"` {
		t.Errorf("MarshalJSON = %s", b)
	}
	for _, bad := range []string{`300`, `"300"`, `"soon"`, `true`} {
		var d Duration
		if err := json.Unmarshal([]byte(bad), &d); err == nil {
			t.Errorf("json %s accepted as %v", bad, d)
		}
	}
	var d Duration = 7
	if err := json.Unmarshal([]byte(`null`), &d); err != nil || d != 7 {
		t.Errorf("null: %v %v", d, err)
	}
}
