package directory

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/config"
)

// settings is a directory config resolved once at Open: attribute names,
// filters, bases and limits, with the config package's per-type defaults
// applied.
type settings struct {
	name     string
	typ      string
	urls     []*url.URL
	startTLS bool

	bindDN       string
	bindPassword config.Secret

	usersBase  string
	groupsBase string
	baseDN     string

	usernameAttr string
	// loginAttr is what FindUser matches a login name against: the mail
	// under legacy naming (where the mail is the login name), else the
	// username attribute.
	loginAttr       string
	uuidAttr        string
	emailAttr       string
	displayNameAttr string

	userObjectFilter  string
	groupObjectFilter string
	userFilter        string
	disabledFilter    string

	pageSize       int
	connectTimeout time.Duration
	timeout        time.Duration
	poolSize       int
}

func resolveSettings(cfg config.Directory) (*settings, error) {
	// cfg is a copy: filling its defaults here (idempotent) makes a
	// hand-built config (tests, fixtures) behave like a loaded one.
	cfg.ApplyDefaults()
	s := &settings{
		name:              cfg.Name,
		typ:               cfg.Type,
		startTLS:          cfg.StartTLS,
		bindDN:            cfg.BindDN,
		bindPassword:      cfg.BindPassword,
		baseDN:            cfg.BaseDN,
		usernameAttr:      cfg.UsernameAttribute,
		loginAttr:         cfg.UsernameAttribute,
		uuidAttr:          cfg.UUIDAttribute,
		emailAttr:         cfg.EmailAttribute,
		displayNameAttr:   cfg.DisplayNameAttribute,
		userObjectFilter:  cfg.UserObjectFilter,
		groupObjectFilter: cfg.GroupObjectFilter,
		userFilter:        cfg.UserFilter,
		disabledFilter:    cfg.DisabledFilter,
		pageSize:          cfg.PageSize,
		connectTimeout:    cfg.ConnectTimeout.D(),
		timeout:           cfg.Timeout.D(),
		poolSize:          cfg.PoolSize,
	}
	if cfg.Naming == config.NamingEmail {
		s.loginAttr = cfg.EmailAttribute
	}
	if _, ok := config.PresetFor(s.typ); !ok {
		// Never guessed (see config.ApplyDefaults): AD read with OpenLDAP
		// attribute names would silently sync nobody.
		return nil, fmt.Errorf("directory %q: unknown type %q", cfg.Name, cfg.Type)
	}
	if len(cfg.URLs) == 0 {
		return nil, fmt.Errorf("directory %q: no urls", cfg.Name)
	}
	for _, raw := range cfg.URLs {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("directory %q: url %q: %w", cfg.Name, raw, err)
		}
		if u.Scheme != "ldap" && u.Scheme != "ldaps" {
			return nil, fmt.Errorf("directory %q: url %q: scheme must be ldap or ldaps", cfg.Name, raw)
		}
		if u.Hostname() == "" {
			return nil, fmt.Errorf("directory %q: url %q: no host", cfg.Name, raw)
		}
		s.urls = append(s.urls, u)
	}
	s.usersBase = cfg.UsersBase()
	s.groupsBase = cfg.GroupsBase()

	for _, f := range []struct{ key, v string }{
		{"user_object_filter", s.userObjectFilter}, {"group_object_filter", s.groupObjectFilter},
		{"user_filter", s.userFilter}, {"disabled_filter", s.disabledFilter},
	} {
		if f.v == "" {
			continue
		}
		// Compiling here turns a typo into an Open error instead of a
		// filter-compile error at every sync.
		if _, err := ldap.CompileFilter(f.v); err != nil {
			return nil, fmt.Errorf("directory %q: %s %q: %w", cfg.Name, f.key, f.v, err)
		}
	}
	// ApplyDefaults fills only zero values; a negative one in a hand-built
	// config gets the same default (SPEC §8).
	if s.pageSize <= 0 {
		s.pageSize = config.DefaultPageSize
	}
	if s.connectTimeout <= 0 {
		s.connectTimeout = config.DefaultConnectTimeout
	}
	if s.timeout <= 0 {
		s.timeout = config.DefaultTimeout
	}
	if s.poolSize <= 0 {
		s.poolSize = config.DefaultPoolSize
	}
	return s, nil
}

func (s *settings) ad() bool { return s.typ == config.TypeActiveDirectory }

// encrypted reports whether every connection to the directory is: StartTLS,
// or only ldaps:// URLs.
func (s *settings) encrypted() bool {
	if s.startTLS {
		return true
	}
	for _, u := range s.urls {
		if u.Scheme != "ldaps" {
			return false
		}
	}
	return true
}

// userSearchFilter is (&<user_object_filter><user_filter>[extra]).
func (s *settings) userSearchFilter(extra string) string {
	var b strings.Builder
	b.WriteString("(&")
	b.WriteString(s.userObjectFilter)
	b.WriteString(s.userFilter)
	b.WriteString(extra)
	b.WriteString(")")
	return b.String()
}

// userAttributes lists what ReadUsers requests. Operational attributes
// (entryUUID, memberOf on OpenLDAP, pwdAccountLockedTime) are only
// returned when asked for by name.
func (s *settings) userAttributes() []string {
	attrs := []string{s.usernameAttr, s.uuidAttr, s.emailAttr, s.displayNameAttr, "memberOf"}
	switch s.typ {
	case config.TypeFreeIPA:
		attrs = append(attrs, "nsUniqueId")
	case config.TypeActiveDirectory:
		attrs = append(attrs, "primaryGroupID")
	}
	if s.disabledFilter == "" {
		switch s.typ {
		case config.TypeActiveDirectory:
			attrs = append(attrs, "userAccountControl")
		case config.TypeFreeIPA:
			attrs = append(attrs, "nsAccountLock")
		default:
			attrs = append(attrs, "pwdAccountLockedTime")
		}
	}
	// Account expiry is a block (SPEC §13), read whatever disabled_filter
	// says: the filter overrides "disabled" only.
	switch s.typ {
	case config.TypeActiveDirectory:
		attrs = append(attrs, "accountExpires")
	case config.TypeFreeIPA:
		attrs = append(attrs, "krbPrincipalExpiration")
	}
	return dedupFold(attrs)
}

// loginAttributes is userAttributes plus the password state FindUser
// reads for a login (SPEC §13): not a block, so a full read skips them
// (msDS-UserPasswordExpiryTimeComputed is computed per entry by AD).
func (s *settings) loginAttributes() []string {
	attrs := s.userAttributes()
	switch s.typ {
	case config.TypeActiveDirectory:
		attrs = append(attrs, "pwdLastSet", "msDS-UserPasswordExpiryTimeComputed")
	case config.TypeFreeIPA:
		attrs = append(attrs, "krbPasswordExpiration")
	default:
		attrs = append(attrs, "pwdReset")
	}
	return dedupFold(attrs)
}

func groupAttributes() []string {
	return []string{"cn", "member", "uniqueMember", "memberUid", "memberOf", "objectSid"}
}

func dedupFold(in []string) []string {
	out := in[:0]
	for _, a := range in {
		dup := false
		for _, b := range out {
			if strings.EqualFold(a, b) {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, a)
		}
	}
	return out
}
