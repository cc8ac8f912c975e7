// Package config holds ldapgate's configuration: the typed schema of the YAML
// file (SPEC §8), its loading (env expansion, *_file secrets, defaults per
// directory type) and its validation, which collects every error with the key
// path and YAML line.
//
// Example:
//
//	listen: ":8080"
//	upstream: "http://127.0.0.1:3000"
//	data_dir: /var/lib/ldapgate
//	directories:
//	  - name: corp
//	    type: ldap
//	    urls: ["ldaps://ldap1.example.com:636"]
//	    base_dn: "dc=example,dc=com"
//	    bind_dn: "cn=ldapgate,ou=services,dc=example,dc=com"
//	    bind_password_file: /run/secrets/ldap_bind
//	    role_mapping:
//	      admin: ["cn=admins,ou=groups,dc=example,dc=com"]
package config

import "time"

// Directory types (SPEC §8 `type`).
const (
	TypeLDAP            = "ldap"
	TypeActiveDirectory = "active_directory"
	TypeFreeIPA         = "freeipa"
)

// Naming schemes (SPEC §3).
const (
	NamingUsernameAtDomain = "username_at_domain"
	// NamingEmail is the legacy scheme: the mail attribute is the username.
	NamingEmail = "email"
)

// Config is the whole file. Every field maps to a key of SPEC §8.
type Config struct {
	// Listen is the address of the login pages, the proxy and the admin API.
	Listen string `yaml:"listen" json:"listen"`
	// MetricsListen serves /metrics, /healthz and /readyz; kept apart so it
	// can stay off the public network.
	MetricsListen string `yaml:"metrics_listen" json:"metrics_listen"`
	// Server holds the connection limits of both listeners.
	Server Server `yaml:"server" json:"server"`
	// Pprof adds Go's profiler (/debug/pprof/) to MetricsListen, to find
	// where a slow sync or proxy spends its time. Off by default: profiles
	// show internals and cost CPU while they run. Read at start only.
	Pprof bool `yaml:"pprof" json:"pprof"`
	// Upstream is the platform's base URL (http or https) requests go to.
	Upstream string `yaml:"upstream" json:"upstream"`
	// DataDir holds the badger store; one process at a time.
	DataDir string `yaml:"data_dir" json:"data_dir"`
	// LogLevel is debug, info, warn or error; changeable at run time.
	LogLevel string `yaml:"log_level" json:"log_level"`
	// AdminTokenFile holds the bearer token of the admin API. Empty: only
	// admin sessions reach the admin API.
	AdminTokenFile string `yaml:"admin_token_file" json:"admin_token_file"`
	// AdminToken is read from AdminTokenFile at load; never from the YAML.
	AdminToken Secret `yaml:"-" json:"-"`
	// Roles are the platform roles, highest first; role_mapping, default_role
	// and local users may only name these.
	Roles []string `yaml:"roles" json:"roles"`
	// Session controls the session cookie and lifetimes.
	Session Session `yaml:"session" json:"session"`
	// Login holds the brute-force limits.
	Login Login `yaml:"login" json:"login"`
	// PublicPaths are path prefixes proxied without a session.
	PublicPaths []string `yaml:"public_paths" json:"public_paths"`
	// TrustedProxies are CIDRs whose X-Forwarded-For is believed when taking
	// the client address; default none, so a client cannot pick its address.
	TrustedProxies []string `yaml:"trusted_proxies" json:"trusted_proxies"`
	// Headers names the identity headers sent upstream.
	Headers Headers `yaml:"headers" json:"headers"`
	// LocalUsers are users kept outside any directory (a break-glass admin).
	LocalUsers []LocalUser `yaml:"local_users" json:"local_users"`
	// Directories are the LDAP directories declared in the file; they are
	// read-only through the admin API.
	Directories []Directory `yaml:"directories" json:"directories"`
	// Store picks the store backend (SPEC §12): badger under data_dir for
	// one box, or PostgreSQL shared by several replicas.
	Store Store `yaml:"store" json:"store"`
	// ReplicaName names this process in logs and in the replica label of
	// the sync metrics. Default: the host name.
	ReplicaName string `yaml:"replica_name" json:"replica_name"`

	// Path is the file this was loaded from (for SIGHUP reloads and messages).
	Path string `yaml:"-" json:"-"`

	// lines maps key paths (directories[0].type) to their line in the file,
	// for Warnings. A pointer keeps fmt's %+v of a Config short.
	lines *lineIndex
}

// Store backends (SPEC §12).
const (
	StoreBadger   = "badger"
	StorePostgres = "postgres"
)

// Store selects and configures the store backend.
//
//	store:
//	  backend: postgres
//	  postgres: {dsn_file: /run/secrets/pg_dsn, max_conns: 20}
type Store struct {
	// Backend is badger (embedded, one process, the default) or postgres
	// (several replicas sharing one database).
	Backend string `yaml:"backend" json:"backend"`
	// Postgres configures the postgres backend.
	Postgres Postgres `yaml:"postgres" json:"postgres"`
}

// Postgres is the connection of the postgres store backend.
type Postgres struct {
	// DSNFile holds the connection string (postgres://user:pass@host/db or
	// key=value form); it carries the password, so it lives in a file.
	DSNFile string `yaml:"dsn_file" json:"dsn_file"`
	// DSN is read from DSNFile at load; never from the YAML.
	DSN Secret `yaml:"-" json:"-"`
	// MaxConns bounds the connection pool of this replica. Default 20.
	MaxConns int `yaml:"max_conns" json:"max_conns"`
}

// Server holds the connection limits of listen and metrics_listen (SPEC
// §8, §11): a client that is slow, or opens many connections, must not
// stop the service for everyone.
type Server struct {
	// ReadHeaderTimeout drops a connection whose request headers have not
	// all arrived this long after it opened (or, on a keep-alive
	// connection, after the request's first byte). Bodies are not bound
	// by it: a slow upload keeps streaming. Default 10s.
	ReadHeaderTimeout Duration `yaml:"read_header_timeout" json:"read_header_timeout"`
	// IdleTimeout closes a keep-alive connection with no next request
	// within it. Default 90s.
	IdleTimeout Duration `yaml:"idle_timeout" json:"idle_timeout"`
	// MaxConns bounds the open connections of each listener; past it new
	// connections wait in the kernel's backlog until one closes. Default
	// 10000. Keep it below the process's descriptor limit (ulimit -n),
	// which upstream and LDAP connections share.
	MaxConns int `yaml:"max_conns" json:"max_conns"`
	// MaxConnsPerIP bounds the open connections from one client address
	// (IPv6: one /64); the next one is closed at once. Default 500.
	MaxConnsPerIP int `yaml:"max_conns_per_ip" json:"max_conns_per_ip"`
}

// Session controls sessions (SPEC §5).
type Session struct {
	// TTL is the absolute lifetime of a session.
	TTL Duration `yaml:"ttl" json:"ttl"`
	// IdleTimeout ends a session not used for this long.
	IdleTimeout Duration `yaml:"idle_timeout" json:"idle_timeout"`
	// CookieName is the session cookie's name; it is never sent upstream.
	CookieName string `yaml:"cookie_name" json:"cookie_name"`
	// SecureCookie sets the cookie's Secure flag; default true. Turn it off
	// only for plain-HTTP test setups.
	SecureCookie *bool `yaml:"secure_cookie" json:"secure_cookie"`
	// MaxPerUser caps one user's sessions: a new session beyond it ends
	// their oldest, so a leaked password cannot pile up sessions unseen and
	// one account cannot fill the store. 0 means the default.
	MaxPerUser int `yaml:"max_per_user" json:"max_per_user"`
	// CookieDomain is the cookie's Domain attribute. Empty (the default):
	// a host-only cookie. Set it where the login page and the platform are
	// different hosts of one site (forward-auth), so the platform's host
	// receives the cookie too.
	CookieDomain string `yaml:"cookie_domain" json:"cookie_domain"`
}

// Login holds the failed-login limits (SPEC §5).
type Login struct {
	// MaxFailures per (username, client address) pair within Window before
	// that pair gets 429. Per pair, not per name: a name's failures from
	// one address must not lock its owner out everywhere.
	MaxFailures int `yaml:"max_failures" json:"max_failures"`
	// MaxFailuresPerAddress per client address (IPv6: per /64) within
	// Window, whatever the names, before that address gets 429.
	MaxFailuresPerAddress int `yaml:"max_failures_per_address" json:"max_failures_per_address"`
	// MaxFailuresPerUser failures of one username from any addresses within
	// Window slow that name's further attempts down (up to 2 s each) but
	// never refuse them: an attack spread over many addresses gets slow,
	// and nobody can lock another person out.
	MaxFailuresPerUser int `yaml:"max_failures_per_user" json:"max_failures_per_user"`
	// Window is the sliding period failures are counted in.
	Window Duration `yaml:"window" json:"window"`
	// RedirectHosts are the hosts (host or host:port) besides ldapgate's
	// own that a login's rd may send the browser to: the platform's host in
	// a forward-auth setup. Default none: anything else goes to "/".
	RedirectHosts []string `yaml:"redirect_hosts" json:"redirect_hosts"`
}

// Headers names the identity headers (SPEC §6).
type Headers struct {
	User   string `yaml:"user" json:"user"`
	Email  string `yaml:"email" json:"email"`
	Role   string `yaml:"role" json:"role"`
	Groups string `yaml:"groups" json:"groups"`
}

// LocalUser is a user declared in the file.
type LocalUser struct {
	// Username is the login name, e.g. root@local.
	Username string `yaml:"username" json:"username"`
	// PasswordHash is an argon2id ($argon2id$...) or bcrypt ($2a$/$2b$) hash.
	PasswordHash Secret `yaml:"password_hash" json:"-"`
	// Role is one of Roles.
	Role string `yaml:"role" json:"role"`
	// Email is optional.
	Email string `yaml:"email" json:"email"`
}

// TLS configures certificate checks of ldaps:// and StartTLS.
type TLS struct {
	// CAFile is a PEM bundle trusted for the directory's certificate; use it
	// for a self-signed CA instead of turning verification off.
	CAFile string `yaml:"ca_file" json:"ca_file"`
	// InsecureSkipVerify turns certificate verification off. Never default.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify" json:"insecure_skip_verify"`
}

// Directory is one LDAP directory (SPEC §8 `directories:` entry). The same
// keys, as JSON, are the body of POST/PATCH /auth/v4/ldap.
type Directory struct {
	// ID is assigned by the store (stable across restarts); not in the file.
	ID uint64 `yaml:"-" json:"id"`
	// Name is unique; a login may pick a directory by name or id.
	Name string `yaml:"name" json:"name"`
	// Type is ldap, active_directory or freeipa; it picks the defaults below.
	Type string `yaml:"type" json:"type"`
	// URLs are tried in order (failover); ldap:// or ldaps:// only.
	URLs []string `yaml:"urls" json:"urls"`
	// StartTLS upgrades ldap:// connections before binding.
	StartTLS bool `yaml:"start_tls" json:"start_tls"`
	// TLS configures certificate verification.
	TLS TLS `yaml:"tls" json:"tls"`
	// BaseDN is where searches start; its dc= parts give the login domain.
	BaseDN string `yaml:"base_dn" json:"base_dn"`
	// BindDN is the service account that reads users and groups.
	BindDN string `yaml:"bind_dn" json:"bind_dn"`
	// BindPassword is the service account's password (inline or ${VAR}).
	BindPassword Secret `yaml:"bind_password" json:"bind_password,omitempty"`
	// BindPasswordFile is read at load into BindPassword.
	BindPasswordFile string `yaml:"bind_password_file" json:"bind_password_file,omitempty"`
	// UsersDN is relative to BaseDN (empty: BaseDN itself). Type default for
	// freeipa: cn=users,cn=accounts.
	UsersDN string `yaml:"users_dn" json:"users_dn"`
	// GroupsDN is relative to BaseDN. Type default for freeipa:
	// cn=groups,cn=accounts.
	GroupsDN string `yaml:"groups_dn" json:"groups_dn"`
	// GroupNameAttribute is `cn` (read groups and their members) or `memberOf`
	// (read each user's memberOf). Default: cn for ldap and
	// active_directory (AD's memberOf omits the primary group, and group
	// entries carry nesting, read with range retrieval past 1500 members);
	// memberOf for freeipa (389-ds's MemberOf plugin flattens nesting).
	GroupNameAttribute string `yaml:"group_name_attribute" json:"group_name_attribute"`
	// EmailAttribute holds the mail address; default mail.
	EmailAttribute string `yaml:"email_attribute" json:"email_attribute"`
	// UsernameAttribute is the login attribute: uid (ldap, freeipa) or
	// sAMAccountName (active_directory).
	UsernameAttribute string `yaml:"username_attribute" json:"username_attribute"`
	// UUIDAttribute is the immutable id: entryUUID (ldap), objectGUID
	// (active_directory), ipaUniqueID (freeipa, nsUniqueId as fallback).
	UUIDAttribute string `yaml:"uuid_attribute" json:"uuid_attribute"`
	// DisplayNameAttribute holds the display name; default cn (displayName on AD).
	DisplayNameAttribute string `yaml:"display_name_attribute" json:"display_name_attribute"`
	// UserObjectFilter selects user entries; a per-type default
	// ((objectClass=person) or AD's (&(objectCategory=person)(objectClass=user))).
	UserObjectFilter string `yaml:"user_object_filter" json:"user_object_filter"`
	// GroupObjectFilter selects group entries; per-type default.
	GroupObjectFilter string `yaml:"group_object_filter" json:"group_object_filter"`
	// UserFilter is an extra filter ANDed to the user search (rule 7: users it
	// no longer matches become out_of_scope).
	UserFilter string `yaml:"user_filter" json:"user_filter"`
	// DisabledFilter, when set, replaces the type's disabled rule (rule 8):
	// users matching it are blocked_in_ldap.
	DisabledFilter string `yaml:"disabled_filter" json:"disabled_filter"`
	// Domain overrides the domain derived from BaseDN's dc= parts.
	Domain string `yaml:"domain" json:"domain"`
	// Naming is username_at_domain (default) or email (legacy).
	Naming string `yaml:"naming" json:"naming"`
	// RoleMapping maps a role to group DNs; the highest mapped role wins.
	RoleMapping map[string][]string `yaml:"role_mapping" json:"role_mapping"`
	// DefaultRole is given to users in no mapped group; empty skips them.
	DefaultRole string `yaml:"default_role" json:"default_role"`
	// Schedule: hourly, daily HH:MM, weekly DAY HH:MM, 5-field cron or the
	// platform's 6-field form.
	Schedule string `yaml:"schedule" json:"schedule"`
	// AutoSync turns the schedule on (default true when Schedule is set).
	AutoSync *bool `yaml:"auto_sync" json:"auto_sync"`
	// MaxBlockFraction: a plan blocking more than this share of the
	// directory's active users is refused unless forced. Default 0.2.
	MaxBlockFraction *float64 `yaml:"max_block_fraction" json:"max_block_fraction"`
	// Live follows the directory's changes as they happen (SPEC §13):
	// RFC 4533 refreshAndPersist on OpenLDAP (syncprov) and 389-ds/FreeIPA
	// (content synchronization plugin), DirSync on Active Directory.
	// Default true; scheduled syncs carry on either way.
	Live *bool `yaml:"live" json:"live"`
	// LiveInterval is how often Active Directory is asked for its changes
	// (DirSync is polled), and the first back-off after a broken stream.
	// Default 10s.
	LiveInterval Duration `yaml:"live_interval" json:"live_interval"`
	// Note is free text for operators.
	Note string `yaml:"note" json:"note"`
	// PageSize of paged searches (RFC 2696). Default 500; AD caps it at 1000.
	PageSize int `yaml:"page_size" json:"page_size"`
	// ConnectTimeout bounds dialing and TLS handshakes. Default 5s.
	ConnectTimeout Duration `yaml:"connect_timeout" json:"connect_timeout"`
	// Timeout bounds each LDAP operation (one page, one bind). Default 30s.
	Timeout Duration `yaml:"timeout" json:"timeout"`
	// PoolSize bounds the service-account connections. Default 4.
	PoolSize int `yaml:"pool_size" json:"pool_size"`

	// Managed is "config" for directories from the file and "api" for those
	// created through the admin API.
	Managed string `yaml:"-" json:"managed"`
}

// Duration is a time.Duration written as "5m", "12h" in YAML and JSON.
type Duration time.Duration

// D returns the standard library value.
func (d Duration) D() time.Duration { return time.Duration(d) }
