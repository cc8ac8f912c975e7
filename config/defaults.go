package config

import (
	"os"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Defaults of the top-level keys (SPEC §8).
const (
	DefaultListen                = ":8080"
	DefaultMetricsListen         = ":9090"
	DefaultDataDir               = "/var/lib/ldapgate"
	DefaultPostgresMaxConns      = 20
	DefaultLogLevel              = "info"
	DefaultSessionTTL            = 12 * time.Hour
	DefaultIdleTimeout           = time.Hour
	DefaultCookieName            = "ldapgate_session"
	DefaultMaxFailures           = 5
	DefaultMaxFailuresPerAddress = 50
	DefaultMaxFailuresPerUser    = 50
	DefaultMaxSessionsPerUser    = 20
	DefaultLoginWindow           = 5 * time.Minute
	DefaultHeaderUser            = "X-Forwarded-User"
	DefaultHeaderEmail           = "X-Forwarded-Email"
	DefaultHeaderRole            = "X-Forwarded-Role"
	DefaultHeaderGroups          = "X-Forwarded-Groups"
	DefaultReadHeaderTimeout     = 10 * time.Second
	DefaultServerIdleTimeout     = 90 * time.Second
	DefaultMaxConns              = 10000
	DefaultMaxConnsPerIP         = 500
)

// Defaults of a directory entry, whatever its type.
const (
	DefaultEmailAttribute   = "mail"
	DefaultPageSize         = 500
	DefaultConnectTimeout   = 5 * time.Second
	DefaultTimeout          = 30 * time.Second
	DefaultPoolSize         = 4
	DefaultMaxBlockFraction = 0.2
	// DefaultLiveInterval: how often DirSync is polled (SPEC §13).
	DefaultLiveInterval = 10 * time.Second
	// MaxPageSizeAD is Active Directory's MaxPageSize policy default: the
	// server silently returns at most this many entries per page, so asking
	// for more only hides how the read is really paced.
	MaxPageSizeAD = 1000
	// MaxPageSize is the largest page_size accepted for any directory.
	MaxPageSize = 10000
)

// Where a directory came from (Directory.Managed).
const (
	ManagedConfig = "config"
	ManagedAPI    = "api"
)

// DefaultRoles are the platform's roles, highest first (SPEC §2).
func DefaultRoles() []string { return []string{"admin", "advanced_user", "user"} }

// Preset holds the per-type defaults of a directory (Authelia-style
// presets: the operator overrides only what differs from the product).
type Preset struct {
	UsernameAttribute    string
	UUIDAttribute        string
	DisplayNameAttribute string
	UserObjectFilter     string
	GroupObjectFilter    string
	GroupNameAttribute   string
	// UsersDN and GroupsDN are relative to base_dn; empty means base_dn.
	UsersDN  string
	GroupsDN string
}

var presets = map[string]Preset{
	TypeLDAP: {
		UsernameAttribute:    "uid",
		UUIDAttribute:        "entryUUID",
		DisplayNameAttribute: "cn",
		UserObjectFilter:     "(objectClass=person)",
		GroupObjectFilter:    "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))",
		GroupNameAttribute:   "cn",
	},
	TypeActiveDirectory: {
		UsernameAttribute:    "sAMAccountName",
		UUIDAttribute:        "objectGUID",
		DisplayNameAttribute: "displayName",
		// objectCategory=person alone also matches contacts; objectClass=user
		// alone also matches computer accounts.
		UserObjectFilter:   "(&(objectCategory=person)(objectClass=user))",
		GroupObjectFilter:  "(objectClass=group)",
		GroupNameAttribute: "cn",
	},
	TypeFreeIPA: {
		UsernameAttribute:    "uid",
		UUIDAttribute:        "ipaUniqueID",
		DisplayNameAttribute: "cn",
		UserObjectFilter:     "(objectClass=person)",
		GroupObjectFilter:    "(objectClass=groupOfNames)",
		// FreeIPA's memberOf plugin keeps memberOf complete, nested groups
		// included, so one user read gives every membership.
		GroupNameAttribute: "memberOf",
		UsersDN:            "cn=users,cn=accounts",
		GroupsDN:           "cn=groups,cn=accounts",
	},
}

// PresetFor returns the defaults of a directory type; ok is false for an
// unknown type.
func PresetFor(typ string) (Preset, bool) {
	p, ok := presets[typ]
	return p, ok
}

// ApplyDefaults fills every unset key. It is idempotent, and leaves values
// it cannot judge (an unknown directory type) to Validate.
func (c *Config) ApplyDefaults() {
	setStr(&c.Listen, DefaultListen)
	setStr(&c.MetricsListen, DefaultMetricsListen)
	setStr(&c.DataDir, DefaultDataDir)
	setStr(&c.Store.Backend, StoreBadger)
	c.Store.Backend = strings.ToLower(c.Store.Backend)
	if c.Store.Postgres.MaxConns == 0 {
		c.Store.Postgres.MaxConns = DefaultPostgresMaxConns
	}
	if c.ReplicaName == "" {
		if h, err := os.Hostname(); err == nil {
			c.ReplicaName = h
		}
	}
	setDur(&c.Server.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDur(&c.Server.IdleTimeout, DefaultServerIdleTimeout)
	if c.Server.MaxConns == 0 {
		c.Server.MaxConns = DefaultMaxConns
	}
	if c.Server.MaxConnsPerIP == 0 {
		c.Server.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	setStr(&c.LogLevel, DefaultLogLevel)
	c.LogLevel = strings.ToLower(c.LogLevel)
	if len(c.Roles) == 0 {
		c.Roles = DefaultRoles()
	}
	setDur(&c.Session.TTL, DefaultSessionTTL)
	setDur(&c.Session.IdleTimeout, DefaultIdleTimeout)
	setStr(&c.Session.CookieName, DefaultCookieName)
	if c.Session.SecureCookie == nil {
		t := true
		c.Session.SecureCookie = &t
	}
	// 0 means "default" for the limits: there is no way to say "no limit",
	// on purpose (an unlimited login endpoint is a password-guessing oracle).
	if c.Login.MaxFailures == 0 {
		c.Login.MaxFailures = DefaultMaxFailures
	}
	if c.Login.MaxFailuresPerAddress == 0 {
		c.Login.MaxFailuresPerAddress = DefaultMaxFailuresPerAddress
	}
	if c.Login.MaxFailuresPerUser == 0 {
		c.Login.MaxFailuresPerUser = DefaultMaxFailuresPerUser
	}
	if c.Session.MaxPerUser == 0 {
		c.Session.MaxPerUser = DefaultMaxSessionsPerUser
	}
	setDur(&c.Login.Window, DefaultLoginWindow)
	setStr(&c.Headers.User, DefaultHeaderUser)
	setStr(&c.Headers.Email, DefaultHeaderEmail)
	setStr(&c.Headers.Role, DefaultHeaderRole)
	setStr(&c.Headers.Groups, DefaultHeaderGroups)
	for i := range c.Directories {
		d := &c.Directories[i]
		setStr(&d.Managed, ManagedConfig)
		d.ApplyDefaults()
	}
}

// ApplyDefaults fills the unset keys of one directory from its type's
// preset and the common defaults. Idempotent; also used for directories
// created through the admin API. The type is never guessed: an empty or
// unknown type gets only the common defaults and Validate reports it,
// because AD read with OpenLDAP attribute names would sync nobody.
func (d *Directory) ApplyDefaults() {
	if p, ok := presets[d.Type]; ok {
		setStr(&d.UsernameAttribute, p.UsernameAttribute)
		setStr(&d.UUIDAttribute, p.UUIDAttribute)
		setStr(&d.DisplayNameAttribute, p.DisplayNameAttribute)
		setStr(&d.UserObjectFilter, p.UserObjectFilter)
		setStr(&d.GroupObjectFilter, p.GroupObjectFilter)
		setStr(&d.GroupNameAttribute, p.GroupNameAttribute)
		setStr(&d.UsersDN, p.UsersDN)
		setStr(&d.GroupsDN, p.GroupsDN)
	}
	setStr(&d.EmailAttribute, DefaultEmailAttribute)
	setStr(&d.Naming, NamingUsernameAtDomain)
	if d.PageSize == 0 {
		d.PageSize = DefaultPageSize
	}
	if d.Type == TypeActiveDirectory && d.PageSize > MaxPageSizeAD {
		d.PageSize = MaxPageSizeAD
	}
	setDur(&d.ConnectTimeout, DefaultConnectTimeout)
	setDur(&d.Timeout, DefaultTimeout)
	setDur(&d.LiveInterval, DefaultLiveInterval)
	if d.PoolSize == 0 {
		d.PoolSize = DefaultPoolSize
	}
	if d.MaxBlockFraction == nil {
		f := DefaultMaxBlockFraction
		d.MaxBlockFraction = &f
	}
	// AutoSync stays nil when unset: AutoSyncEnabled reads nil as "on when a
	// schedule is set". Freezing false here would make a later API PATCH
	// that adds a schedule silently never run.
}

// DomainName is the login domain of the directory (SPEC §3): the domain
// key, else the dc= components of base_dn joined with '.', lower-cased
// (dc=example,dc=com → example.com). Empty when neither gives one.
func (d *Directory) DomainName() string {
	if s := strings.TrimSpace(d.Domain); s != "" {
		return strings.ToLower(s)
	}
	return domainFromDN(d.BaseDN)
}

func domainFromDN(base string) string {
	if strings.TrimSpace(base) == "" {
		return ""
	}
	dn, err := ldap.ParseDN(base)
	if err != nil {
		return ""
	}
	var parts []string
	for _, rdn := range dn.RDNs {
		for _, a := range rdn.Attributes {
			if strings.EqualFold(a.Type, "dc") && a.Value != "" {
				parts = append(parts, strings.ToLower(a.Value))
			}
		}
	}
	return strings.Join(parts, ".")
}

// UsersBase is the DN user searches start from: users_dn + "," + base_dn,
// or base_dn when users_dn is empty. Case is kept as written: servers
// compare DNs case-insensitively anyway, and logs should show the operator's
// spelling.
func (d *Directory) UsersBase() string { return joinDN(d.UsersDN, d.BaseDN) }

// GroupsBase is the DN group searches start from (see UsersBase).
func (d *Directory) GroupsBase() string { return joinDN(d.GroupsDN, d.BaseDN) }

func joinDN(rel, base string) string {
	rel, base = strings.TrimSpace(rel), strings.TrimSpace(base)
	switch {
	case rel == "":
		return base
	case base == "":
		return rel
	}
	return rel + "," + base
}

// AutoSyncEnabled reports whether the schedule runs: a schedule is set and
// auto_sync is not false.
func (d *Directory) AutoSyncEnabled() bool {
	if strings.TrimSpace(d.Schedule) == "" {
		return false
	}
	return d.AutoSync == nil || *d.AutoSync
}

// LiveEnabled reports whether the directory's changes are followed as
// they happen: live is not false.
func (d *Directory) LiveEnabled() bool { return d.Live == nil || *d.Live }

// BlockFraction is max_block_fraction, or its default when unset.
func (d *Directory) BlockFraction() float64 {
	if d.MaxBlockFraction == nil {
		return DefaultMaxBlockFraction
	}
	return *d.MaxBlockFraction
}

// SecureCookie reports whether the session cookie carries Secure; true
// unless session.secure_cookie is explicitly false.
func (c *Config) SecureCookie() bool {
	return c.Session.SecureCookie == nil || *c.Session.SecureCookie
}

func setStr(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

func setDur(p *Duration, v time.Duration) {
	if *p == 0 {
		*p = Duration(v)
	}
}
