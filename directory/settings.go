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
// filters, bases and limits. The config package applies the per-type
// defaults; the fallbacks here only keep a hand-built config.Directory (tests,
// a directory created before defaults ran) from producing filters like
// "(=alice)".
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

	usernameAttr    string
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

// Fallbacks, matching the config package's type defaults (SPEC §8).
const (
	defaultPageSize       = 500
	defaultConnectTimeout = 5 * time.Second
	defaultTimeout        = 30 * time.Second
	defaultPoolSize       = 4
)

func resolveSettings(cfg config.Directory) (*settings, error) {
	s := &settings{
		name:              cfg.Name,
		typ:               cfg.Type,
		startTLS:          cfg.StartTLS,
		bindDN:            cfg.BindDN,
		bindPassword:      cfg.BindPassword,
		baseDN:            cfg.BaseDN,
		usernameAttr:      cfg.UsernameAttribute,
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
	if s.typ == "" {
		s.typ = config.TypeLDAP
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
	s.usersBase = subtreeBase(cfg.UsersDN, cfg.BaseDN)
	s.groupsBase = subtreeBase(cfg.GroupsDN, cfg.BaseDN)

	ad, ipa := s.typ == config.TypeActiveDirectory, s.typ == config.TypeFreeIPA
	def := func(v *string, ldapV, adV, ipaV string) {
		if *v != "" {
			return
		}
		switch {
		case ad:
			*v = adV
		case ipa:
			*v = ipaV
		default:
			*v = ldapV
		}
	}
	def(&s.usernameAttr, "uid", "sAMAccountName", "uid")
	def(&s.uuidAttr, "entryUUID", "objectGUID", "ipaUniqueID")
	def(&s.emailAttr, "mail", "mail", "mail")
	def(&s.displayNameAttr, "cn", "displayName", "cn")
	def(&s.userObjectFilter, "(objectClass=person)", "(&(objectCategory=person)(objectClass=user))", "(objectClass=person)")
	def(&s.groupObjectFilter,
		"(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))",
		"(objectClass=group)",
		"(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))")
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
	if s.pageSize <= 0 {
		s.pageSize = defaultPageSize
	}
	if s.connectTimeout <= 0 {
		s.connectTimeout = defaultConnectTimeout
	}
	if s.timeout <= 0 {
		s.timeout = defaultTimeout
	}
	if s.poolSize <= 0 {
		s.poolSize = defaultPoolSize
	}
	return s, nil
}

func (s *settings) ad() bool { return s.typ == config.TypeActiveDirectory }

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

// userAttributes lists what ReadUsers and FindUser request. Operational
// attributes (entryUUID, memberOf on OpenLDAP, pwdAccountLockedTime) are only
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

// subtreeBase resolves users_dn/groups_dn, which SPEC §8 makes relative to
// base_dn; a value that already ends with base_dn is taken as absolute so a
// full DN written by an operator is not doubled.
// TODO(config): switch to cfg.UsersBase()/cfg.GroupsBase() once they land.
func subtreeBase(rel, base string) string {
	switch {
	case rel == "":
		return base
	case base == "":
		return rel
	}
	if r, err := ldap.ParseDN(rel); err == nil {
		if b, err := ldap.ParseDN(base); err == nil && (b.EqualFold(r) || b.AncestorOfFold(r)) {
			return rel
		}
	}
	return rel + "," + base
}
