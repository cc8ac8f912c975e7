package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/schedule"
)

// Validate checks a Config built without Load (defaults already applied),
// e.g. in tests. Lines are those of the file when c came from Load.
func (c *Config) Validate() Errors {
	col := &collector{lines: c.lines.get()}
	c.validate(col)
	sortByLine(col.errs)
	return col.errs
}

func (c *Config) validate(col *collector) {
	checkAddr(col, "listen", c.Listen)
	checkAddr(col, "metrics_listen", c.MetricsListen)
	if c.Listen != "" && c.Listen == c.MetricsListen {
		col.add("metrics_listen", "same address as listen %q; /metrics must be served apart", c.Listen)
	}
	c.validateServer(col)
	checkUpstream(col, c.Upstream)
	if strings.TrimSpace(c.DataDir) == "" {
		col.add("data_dir", "required")
	}
	switch c.Store.Backend {
	case StoreBadger:
	case StorePostgres:
		if c.Store.Postgres.DSNFile == "" {
			col.add("store.postgres.dsn_file", "required with store.backend postgres")
		}
		if c.Store.Postgres.MaxConns < 0 {
			col.add("store.postgres.max_conns", "must be positive")
		}
	default:
		col.add("store.backend", "unknown backend %q (want badger or postgres)", c.Store.Backend)
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		col.add("log_level", "unknown level %q (want debug, info, warn or error)", c.LogLevel)
	}
	if c.AdminTokenFile != "" && c.AdminToken.IsSet() && len(c.AdminToken.Reveal()) < minAdminToken {
		// Length only: the value itself is never printed.
		col.add("admin_token_file", "admin token is %d characters long; use at least %d (e.g. openssl rand -hex 32)", len(c.AdminToken.Reveal()), minAdminToken)
	}

	c.validateRoles(col)
	c.validateSession(col)
	c.validateLogin(col)

	for i, cidr := range c.TrustedProxies {
		checkCIDR(col, fmt.Sprintf("trusted_proxies[%d]", i), cidr)
	}
	seenHeader := map[string]string{}
	for _, h := range []struct{ key, v string }{
		{"headers.user", c.Headers.User}, {"headers.email", c.Headers.Email},
		{"headers.role", c.Headers.Role}, {"headers.groups", c.Headers.Groups},
	} {
		if !isToken(h.v) {
			col.add(h.key, "%q is not a valid HTTP header name", h.v)
			continue
		}
		// Header stripping compares names ignoring case and _ vs -, so two
		// names equal that way would strip each other.
		norm := strings.ToLower(strings.ReplaceAll(h.v, "_", "-"))
		if prev, dup := seenHeader[norm]; dup {
			col.add(h.key, "same header as %s (%q)", prev, h.v)
		}
		seenHeader[norm] = h.key
	}
	for i, p := range c.PublicPaths {
		if !strings.HasPrefix(p, "/") {
			col.add(fmt.Sprintf("public_paths[%d]", i), "%q must start with /", p)
		}
	}
	c.validateLocalUsers(col)

	names := map[string]int{}
	for i := range c.Directories {
		d := &c.Directories[i]
		p := fmt.Sprintf("directories[%d]", i)
		d.validate(col, p, c.Roles)
		if d.Name == "" {
			continue
		}
		key := strings.ToLower(d.Name)
		if j, dup := names[key]; dup {
			col.add(p+".name", "duplicate directory name %q (also directories[%d]; names compare case-insensitively)", d.Name, j)
		} else {
			names[key] = i
		}
	}
}

const minAdminToken = 16

func (c *Config) validateServer(col *collector) {
	s := c.Server
	for _, d := range []struct {
		key string
		v   Duration
	}{{"server.read_header_timeout", s.ReadHeaderTimeout}, {"server.idle_timeout", s.IdleTimeout}} {
		if d.v < 0 {
			col.add(d.key, "must be positive, got %s", d.v)
		}
	}
	// 0 means the default (ApplyDefaults): no listener runs unlimited.
	if s.MaxConns < 0 {
		col.add("server.max_conns", "must be 0 (default %d) or more, got %d", DefaultMaxConns, s.MaxConns)
	}
	if s.MaxConnsPerIP < 0 {
		col.add("server.max_conns_per_ip", "must be 0 (default %d) or more, got %d", DefaultMaxConnsPerIP, s.MaxConnsPerIP)
	}
}

func (c *Config) validateRoles(col *collector) {
	if len(c.Roles) == 0 {
		col.add("roles", "at least one role is required")
	}
	seen := map[string]bool{}
	for i, r := range c.Roles {
		p := fmt.Sprintf("roles[%d]", i)
		switch {
		case !roleName.MatchString(r):
			col.add(p, "invalid role name %q (letters, digits, _ . - only: it is sent in a header)", r)
		case seen[r]:
			col.add(p, "duplicate role %q", r)
		}
		seen[r] = true
	}
}

var roleName = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

func (c *Config) validateSession(col *collector) {
	s := c.Session
	if s.TTL <= 0 {
		col.add("session.ttl", "must be positive, got %s", s.TTL)
	}
	if s.IdleTimeout <= 0 {
		col.add("session.idle_timeout", "must be positive, got %s", s.IdleTimeout)
	}
	if s.TTL > 0 && s.IdleTimeout > s.TTL {
		col.add("session.idle_timeout", "%s is longer than session.ttl %s", s.IdleTimeout, s.TTL)
	}
	if !isToken(s.CookieName) {
		col.add("session.cookie_name", "%q is not a valid cookie name", s.CookieName)
	}
	if s.MaxPerUser < 0 {
		col.add("session.max_per_user", "must be 0 (default %d) or more, got %d", DefaultMaxSessionsPerUser, s.MaxPerUser)
	}
	if s.CookieDomain != "" && !isHostName(strings.TrimPrefix(s.CookieDomain, ".")) {
		col.add("session.cookie_domain", "%q is not a domain name", s.CookieDomain)
	}
}

// isHostName: letters, digits, '-' and '.', as a DNS name (or an IPv4
// address) is written; nothing a URL or a header could be split on.
func isHostName(s string) bool {
	if s == "" || len(s) > 253 || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func (c *Config) validateLogin(col *collector) {
	l := c.Login
	if l.MaxFailures < 0 {
		col.add("login.max_failures", "must be 0 (default %d) or more, got %d", DefaultMaxFailures, l.MaxFailures)
	}
	if l.MaxFailuresPerAddress < 0 {
		col.add("login.max_failures_per_address", "must be 0 (default %d) or more, got %d", DefaultMaxFailuresPerAddress, l.MaxFailuresPerAddress)
	}
	if l.MaxFailuresPerUser < 0 {
		col.add("login.max_failures_per_user", "must be 0 (default %d) or more, got %d", DefaultMaxFailuresPerUser, l.MaxFailuresPerUser)
	}
	if l.Window <= 0 {
		col.add("login.window", "must be positive, got %s", l.Window)
	}
	for i, h := range l.RedirectHosts {
		host, port, err := net.SplitHostPort(h)
		if err != nil {
			host, port = h, ""
		}
		if !isHostName(host) || (port != "" && !isUint(port)) {
			col.add(fmt.Sprintf("login.redirect_hosts[%d]", i), "%q is not a host or host:port (no scheme, no path)", h)
		}
	}
}

func (c *Config) validateLocalUsers(col *collector) {
	seen := map[string]int{}
	for i, u := range c.LocalUsers {
		p := fmt.Sprintf("local_users[%d]", i)
		// Duplicates compare as logins do, or two entries would both match one login.
		name := account.NormalizeName(u.Username)
		switch {
		case name == "":
			col.add(p+".username", "required")
		case strings.ContainsAny(name, " \t\r\n:"):
			// ':' would break Authorization: Basic user:password.
			col.add(p+".username", "%q must not contain spaces or ':'", u.Username)
		default:
			if j, dup := seen[name]; dup {
				col.add(p+".username", "duplicate local user %q (also local_users[%d])", u.Username, j)
			}
			seen[name] = i
		}
		if !slices.Contains(c.Roles, u.Role) {
			col.add(p+".role", "unknown role %q (roles: %s)", u.Role, strings.Join(c.Roles, ", "))
		}
		// The hash itself is never printed: it is a secret too (offline guessing).
		switch err := checkHash(u.PasswordHash.Reveal()); {
		case u.PasswordHash == "":
			col.add(p+".password_hash", "required")
		case err != nil:
			col.add(p+".password_hash", "%s", err)
		}
	}
}

// checkHash accepts the PHC form of argon2id and the bcrypt variants.
func checkHash(h string) error {
	switch {
	case strings.HasPrefix(h, "$argon2id$"):
		// $argon2id$v=19$m=65536,t=3,p=4$<salt>$<hash>
		parts := strings.Split(h, "$")
		if len(parts) != 6 || !strings.HasPrefix(parts[2], "v=") || !strings.HasPrefix(parts[3], "m=") || parts[4] == "" || parts[5] == "" {
			return fmt.Errorf("malformed argon2id hash (want $argon2id$v=19$m=...,t=...,p=...$salt$hash)")
		}
		return nil
	case strings.HasPrefix(h, "$2a$"), strings.HasPrefix(h, "$2b$"), strings.HasPrefix(h, "$2y$"):
		if _, err := bcrypt.Cost([]byte(h)); err != nil || len(h) != 60 {
			return fmt.Errorf("malformed bcrypt hash")
		}
		return nil
	}
	return fmt.Errorf("not an argon2id ($argon2id$...) or bcrypt ($2a$, $2b$, $2y$) hash")
}

// Validate checks one directory on its own (a directory created through the
// admin API): the same rules as in the file, without line numbers, with
// paths under "directory". Checks across directories (duplicate names) are
// the caller's.
func (d *Directory) Validate(roles []string) Errors {
	return d.ValidateAt("directory", roles)
}

// ValidateAt is Validate with the path prefix chosen by the caller ("" for
// bare keys, as in an API body).
func (d *Directory) ValidateAt(prefix string, roles []string) Errors {
	col := &collector{}
	d.validate(col, prefix, roles)
	return col.errs
}

var domainName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$`)

func (d *Directory) validate(col *collector, p string, roles []string) {
	key := func(k string) string { return join(p, k) }
	switch name := strings.TrimSpace(d.Name); {
	case name == "":
		col.add(key("name"), "required")
	case isUint(name):
		// Logins and the API take a number as a directory id first.
		col.add(key("name"), "%q must not be a number (a number is read as a directory id)", d.Name)
	case len(name) > 64 || strings.ContainsFunc(name, func(r rune) bool { return r < ' ' || r == 0x7f }):
		col.add(key("name"), "must be at most 64 printable characters")
	}
	_, known := presets[d.Type]
	switch {
	case d.Type == "":
		col.add(key("type"), "required (ldap, active_directory or freeipa)")
	case !known:
		col.add(key("type"), "unknown type %q", d.Type)
	}

	if len(d.URLs) == 0 {
		col.add(key("urls"), "at least one ldap:// or ldaps:// URL is required")
	}
	for i, raw := range d.URLs {
		checkLDAPURL(col, fmt.Sprintf("%s[%d]", key("urls"), i), raw, d.StartTLS)
	}
	if d.TLS.CAFile != "" {
		if pem, err := readLimited(d.TLS.CAFile); err != nil {
			col.add(key("tls.ca_file"), "cannot read: %v", err)
		} else if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			col.add(key("tls.ca_file"), "%s holds no PEM certificate", d.TLS.CAFile)
		}
	}

	baseOK := false
	if strings.TrimSpace(d.BaseDN) == "" {
		col.add(key("base_dn"), "required")
	} else {
		baseOK = checkDN(col, key("base_dn"), d.BaseDN)
	}
	if d.BindDN != "" {
		checkDN(col, key("bind_dn"), d.BindDN)
	}
	checkDN(col, key("users_dn"), d.UsersDN)
	checkDN(col, key("groups_dn"), d.GroupsDN)
	// bind_password together with bind_password_file is refused by Load,
	// which can still tell them apart (afterwards the file's content is in
	// BindPassword).
	switch {
	case d.BindDN != "" && !d.BindPassword.IsSet() && d.BindPasswordFile == "":
		// go-ldap refuses an empty-password bind (it would be an
		// unauthenticated bind that "succeeds" without checking anything).
		col.addNear(key("bind_password"), key("bind_dn"), "bind_dn is set but no bind_password or bind_password_file")
	case d.BindDN == "" && d.BindPassword.IsSet():
		col.add(key("bind_dn"), "bind_password is set but bind_dn is empty")
	}

	for _, f := range []struct{ k, v string }{
		{"user_object_filter", d.UserObjectFilter}, {"group_object_filter", d.GroupObjectFilter},
		{"user_filter", d.UserFilter}, {"disabled_filter", d.DisabledFilter},
	} {
		if f.v == "" {
			continue
		}
		if _, err := ldap.CompileFilter(f.v); err != nil {
			col.add(key(f.k), "invalid LDAP filter %q: %v", f.v, ldapErrText(err))
		}
	}
	for _, a := range []struct{ k, v string }{
		{"email_attribute", d.EmailAttribute}, {"username_attribute", d.UsernameAttribute},
		{"uuid_attribute", d.UUIDAttribute}, {"display_name_attribute", d.DisplayNameAttribute},
	} {
		if a.v != "" && !attrName.MatchString(a.v) {
			col.add(key(a.k), "%q is not an LDAP attribute name", a.v)
		}
	}
	if g := d.GroupNameAttribute; g != "" && !strings.EqualFold(g, "cn") && !strings.EqualFold(g, "memberOf") {
		col.add(key("group_name_attribute"), "%q: want cn (read groups and their members) or memberOf (read each user's memberOf)", g)
	}

	switch d.Naming {
	case "", NamingUsernameAtDomain, NamingEmail:
	default:
		col.add(key("naming"), "unknown naming %q (want username_at_domain or email)", d.Naming)
	}
	if dom := strings.TrimSpace(d.Domain); dom != "" {
		if !domainName.MatchString(strings.ToLower(dom)) {
			col.add(key("domain"), "%q is not a domain name", d.Domain)
		}
	} else if baseOK && d.DomainName() == "" {
		col.addNear(key("domain"), key("base_dn"), "base_dn %q has no dc= parts to derive the login domain from; set domain", d.BaseDN)
	}

	roleList := strings.Join(roles, ", ")
	mapped := make([]string, 0, len(d.RoleMapping))
	for r := range d.RoleMapping {
		mapped = append(mapped, r)
	}
	slices.Sort(mapped) // map order is random; messages must not be
	for _, r := range mapped {
		rp := key("role_mapping") + "." + r
		if !slices.Contains(roles, r) {
			col.add(rp, "unknown role %q (roles: %s)", r, roleList)
		}
		for i, dn := range d.RoleMapping[r] {
			gp := fmt.Sprintf("%s[%d]", rp, i)
			if strings.TrimSpace(dn) == "" {
				col.add(gp, "empty group DN")
				continue
			}
			checkDN(col, gp, dn)
		}
	}
	if d.DefaultRole != "" && !slices.Contains(roles, d.DefaultRole) {
		col.add(key("default_role"), "unknown role %q (roles: %s)", d.DefaultRole, roleList)
	}

	if strings.TrimSpace(d.Schedule) != "" {
		if _, err := schedule.Parse(d.Schedule); err != nil {
			col.add(key("schedule"), "%v", err)
		}
	}
	if d.MaxBlockFraction != nil {
		if f := *d.MaxBlockFraction; math.IsNaN(f) || f < 0 || f > 1 {
			col.add(key("max_block_fraction"), "must be between 0 and 1, got %v", f)
		}
	}
	if d.PageSize < 0 || d.PageSize > MaxPageSize {
		col.add(key("page_size"), "must be between 1 and %d (0 = default %d), got %d", MaxPageSize, DefaultPageSize, d.PageSize)
	}
	if d.ConnectTimeout < 0 {
		col.add(key("connect_timeout"), "must be positive, got %s", d.ConnectTimeout)
	}
	if d.Timeout < 0 {
		col.add(key("timeout"), "must be positive, got %s", d.Timeout)
	}
	// Below a second, DirSync polling would keep a domain controller busy.
	if d.LiveInterval != 0 && time.Duration(d.LiveInterval) < time.Second {
		col.add(key("live_interval"), "must be at least 1s, got %s", d.LiveInterval)
	}
	if d.PoolSize < 0 || d.PoolSize > 256 {
		col.add(key("pool_size"), "must be between 1 and 256 (0 = default %d), got %d", DefaultPoolSize, d.PoolSize)
	}
}

var attrName = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9-]*|[0-9]+(\.[0-9]+)+)$`)

func isUint(s string) bool {
	_, err := strconv.ParseUint(s, 10, 64)
	return err == nil
}

func checkDN(col *collector, path, dn string) bool {
	if dn == "" {
		return true
	}
	if _, err := ldap.ParseDN(dn); err != nil {
		col.add(path, "invalid DN %q: %v", dn, ldapErrText(err))
		return false
	}
	return true
}

// ldapErrText drops go-ldap's "LDAP Result Code 201 "Filter Compile Error": "
// preamble, which means nothing to an operator reading a config error.
func ldapErrText(err error) string {
	var le *ldap.Error
	if errors.As(err, &le) && le.Err != nil {
		return le.Err.Error()
	}
	return err.Error()
}

func checkLDAPURL(col *collector, path, raw string, startTLS bool) {
	u, err := url.Parse(raw)
	if err != nil {
		col.add(path, "invalid URL %q", raw)
		return
	}
	switch u.Scheme {
	case "ldap":
	case "ldaps":
		if startTLS {
			col.add(path, "%q is ldaps:// but start_tls is true: StartTLS is for ldap:// only", raw)
		}
	default:
		col.add(path, "%q: scheme must be ldap:// or ldaps://", raw)
		return
	}
	if u.Hostname() == "" {
		col.add(path, "%q has no host", raw)
		return
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			col.add(path, "%q: invalid port", raw)
		}
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil || u.Fragment != "" {
		col.add(path, "%q: only scheme://host:port is used; put the base DN in base_dn", raw)
	}
}

func checkAddr(col *collector, path, addr string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		col.add(path, "%q is not host:port (e.g. \":8080\" or \"127.0.0.1:8080\")", addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		col.add(path, "%q: port must be 1-65535", addr)
	}
	if strings.ContainsAny(host, " /") {
		col.add(path, "%q: invalid host", addr)
	}
}

func checkUpstream(col *collector, raw string) {
	if strings.TrimSpace(raw) == "" {
		col.add("upstream", "required (the platform's base URL, e.g. http://127.0.0.1:3000)")
		return
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		col.add("upstream", "invalid URL %q", raw)
	case u.Scheme != "http" && u.Scheme != "https":
		col.add("upstream", "%q: want an absolute http:// or https:// URL", raw)
	case u.Host == "" || u.Hostname() == "":
		col.add("upstream", "%q has no host", raw)
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		col.add("upstream", "%q: a base URL has no query, fragment or user info", raw)
	}
}

func checkCIDR(col *collector, path, s string) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		if _, ipErr := netip.ParseAddr(strings.TrimSpace(s)); ipErr == nil {
			col.add(path, "%q is an address, not a CIDR (write %s/32 or /128 for one host)", s, s)
			return
		}
		col.add(path, "%q is not a CIDR (e.g. 10.0.0.0/8)", s)
		return
	}
	if p.Bits() == 0 {
		// Everyone's X-Forwarded-For would be believed: any client could pick
		// the address the per-address login limit counts against.
		col.add(path, "%q trusts every address: any client could forge X-Forwarded-For and dodge the per-address login limit; list your proxies' networks", s)
		return
	}
	if p.Masked() != p {
		col.add(path, "%q has host bits set (did you mean %s?)", s, p.Masked())
	}
}

// isToken reports whether s is an RFC 7230 token (header and cookie names).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
