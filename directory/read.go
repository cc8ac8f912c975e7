package directory

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/config"
)

// OID of LDAP_MATCHING_RULE_IN_CHAIN: AD evaluates memberOf transitively.
const matchingRuleInChain = "1.2.840.113556.1.4.1941"

// ridDomainUsers is the RID of AD's "Domain Users", every user's default
// primary group.
const ridDomainUsers = 513

// ReadUsers streams every user under the users base matching
// <user_object_filter>, page by page.
//
// With user_filter set, users outside it are still read, marked OutOfScope
// (SPEC §4 rule 7): a user who leaves the filter must be blocked
// out_of_scope, not deleted_in_ldap, and the syncer can only tell the two
// apart if the entry is in the read. Scope comes from a first paged search
// of (&<user_object_filter><user_filter>) whose DNs (normalised, no
// attributes) are kept in a set; the main read of <user_object_filter>
// marks users whose DN is not in it. Why this and not the smaller
// complement, (&<user_object_filter>(!<user_filter>)): LDAP filters are
// three-valued (RFC 4511 §4.5.1.7), and NOT of Undefined (an attribute
// type the server does not know, as TestSlapdUserFilterUndefined shows on
// slapd, or one without an equality rule) is still Undefined, so an entry
// could match neither search and would wrongly count as in scope; the set
// holds exactly what the old single search returned. It costs one
// attribute-less search and a DN set of the in-scope users (roughly
// 10-15 MB of strings and map at 100k). An entry created or renamed between the two
// searches is out of scope for this one run only.
//
// With disabled_filter set (rule 8's override), Disabled comes the same
// way from a search of (&<user_object_filter><disabled_filter>): only the
// disabled users' DNs sit in memory, and the type's own disabled
// attributes are not requested.
func (l *LDAP) ReadUsers(ctx context.Context, fn func(User) error) error {
	defer l.observe("read_users", time.Now())
	delivered := false
	return l.withConn(ctx, "read_users", func() bool { return !delivered }, func(c *conn) error {
		dnSet := func(filter string) (map[string]struct{}, error) {
			set := map[string]struct{}{}
			req := ldap.NewSearchRequest(l.s.usersBase, ldap.ScopeWholeSubtree, ldap.DerefAlways,
				0, timeLimitSeconds(l.s.timeout), false, filter, []string{"1.1"}, nil)
			err := l.search(ctx, c, "read_users", req, l.s.pageSize, func(e *entry) error {
				set[NormalizeDN(e.DN)] = struct{}{}
				return nil
			})
			return set, err
		}
		var disabled, inScope map[string]struct{}
		var err error
		if l.s.disabledFilter != "" {
			if disabled, err = dnSet(l.s.objectSearchFilter(l.s.disabledFilter)); err != nil {
				return err
			}
		}
		if l.s.userFilter != "" {
			if inScope, err = dnSet(l.s.userSearchFilter("")); err != nil {
				return err
			}
		}
		req := ldap.NewSearchRequest(l.s.usersBase, ldap.ScopeWholeSubtree, ldap.DerefAlways,
			0, timeLimitSeconds(l.s.timeout), false, l.s.objectSearchFilter(""), l.s.userAttributes(), nil)
		return l.search(ctx, c, "read_users", req, l.s.pageSize, func(e *entry) error {
			delivered = true
			u := l.toUser(e, disabled)
			if inScope != nil {
				_, in := inScope[NormalizeDN(e.DN)]
				u.OutOfScope = !in
			}
			if err := fn(u); err != nil {
				return &callbackError{err}
			}
			return nil
		})
	})
}

func (l *LDAP) toUser(e *entry, disabledDNs map[string]struct{}) User {
	u := User{
		DN:          e.DN,
		Username:    e.first(l.s.usernameAttr),
		Email:       e.first(l.s.emailAttr),
		DisplayName: e.first(l.s.displayNameAttr),
		MemberOf:    e.values("memberOf"),
	}
	if strings.EqualFold(l.s.uuidAttr, "objectGUID") {
		// Binary on AD; as text it would be 16 raw bytes.
		u.UUID, _ = formatGUID(e.firstRaw(l.s.uuidAttr))
	} else {
		u.UUID = e.first(l.s.uuidAttr)
	}
	if u.UUID == "" && l.s.typ == config.TypeFreeIPA {
		// A plain 389-ds has no ipaUniqueID; nsUniqueId is its own
		// immutable id.
		u.UUID = e.first("nsUniqueId")
	}
	if v := e.first("primaryGroupID"); v != "" {
		if n, err := strconv.ParseUint(v, 10, 32); err == nil {
			u.PrimaryGroupID = uint32(n)
		}
	}
	l.readStates(e, &u)
	if disabledDNs != nil {
		_, u.Disabled = disabledDNs[NormalizeDN(e.DN)]
		return u
	}
	switch l.s.typ {
	case config.TypeActiveDirectory:
		// ADS_UF_ACCOUNTDISABLE. A lockout (lockoutTime) is not a block:
		// the failed bind reports it (issue 6).
		if v, err := strconv.ParseInt(e.first("userAccountControl"), 10, 64); err == nil {
			u.Disabled = v&0x2 != 0
		}
	case config.TypeFreeIPA:
		u.Disabled = strings.EqualFold(strings.TrimSpace(e.first("nsAccountLock")), "TRUE")
	default:
		// ppolicy: 000001010000Z locks until an administrator unlocks
		// (disabled); any other value is a lockout after failed binds,
		// temporary, which the bind reports (SPEC §13).
		u.Disabled = slices.Contains(e.values("pwdAccountLockedTime"), ppolicyLockedForever)
	}
	return u
}

// ppolicyLockedForever is the pwdAccountLockedTime an administrator sets
// to lock an account until unlocked (slapo-ppolicy(5)).
const ppolicyLockedForever = "000001010000Z"

// readStates reads the account and password expiry of an entry, where
// the entry carries them (SPEC §13's table).
func (l *LDAP) readStates(e *entry, u *User) {
	switch l.s.typ {
	case config.TypeActiveDirectory:
		u.AccountExpiresAt = fileTime(e.first("accountExpires"))
		u.PasswordMustChange = strings.TrimSpace(e.first("pwdLastSet")) == "0"
		u.PasswordExpiresAt = fileTime(e.first("msDS-UserPasswordExpiryTimeComputed"))
	case config.TypeFreeIPA:
		u.AccountExpiresAt = generalizedTime(e.first("krbPrincipalExpiration"))
		u.PasswordExpiresAt = generalizedTime(e.first("krbPasswordExpiration"))
	default:
		u.PasswordMustChange = strings.EqualFold(strings.TrimSpace(e.first("pwdReset")), "TRUE")
	}
}

// fileTime reads an AD time (100 ns intervals since 1601-01-01 UTC). 0 and
// the largest int64 mean never; so does anything unreadable.
func fileTime(v string) time.Time {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n <= 0 || n == math.MaxInt64 {
		return time.Time{}
	}
	const epochDiff = 116444736000000000 // 1601 to 1970 in 100 ns
	n -= epochDiff
	return time.Unix(n/1e7, n%1e7*100).UTC()
}

// generalizedTime reads an LDAP GeneralizedTime (RFC 4517 §3.3.13);
// zero when empty or unreadable.
func generalizedTime(v string) time.Time {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}
	}
	t, err := ber.ParseGeneralizedTime([]byte(v))
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}

// ReadGroups streams every group under the groups base. On Active Directory
// it also streams CN=Users,CN=Builtin,<base>, every group inside it
// (transitively), and Domain Users (RID 513) — once each, even when they are
// also under the groups base — because the syncer resolves rule 2 (a user
// counts only through Builtin\Users, nesting and primaryGroupID included)
// from the group graph, and those groups usually live outside groups_dn.
func (l *LDAP) ReadGroups(ctx context.Context, fn func(Group) error) error {
	defer l.observe("read_groups", time.Now())
	delivered := false
	return l.withConn(ctx, "read_groups", func() bool { return !delivered }, func(c *conn) error {
		var seen map[string]struct{}
		if l.s.ad() {
			seen = map[string]struct{}{}
		}
		emit := func(e *entry) error {
			if seen != nil {
				k := NormalizeDN(e.DN)
				if _, dup := seen[k]; dup {
					return nil
				}
				seen[k] = struct{}{}
			}
			g, err := l.toGroup(ctx, c, e)
			if err != nil {
				return err
			}
			delivered = true
			if err := fn(g); err != nil {
				return &callbackError{err}
			}
			return nil
		}
		req := ldap.NewSearchRequest(l.s.groupsBase, ldap.ScopeWholeSubtree, ldap.DerefAlways,
			0, timeLimitSeconds(l.s.timeout), false, l.s.groupObjectFilter, groupAttributes(), nil)
		if err := l.search(ctx, c, "read_groups", req, l.s.pageSize, emit); err != nil {
			return err
		}
		if l.s.ad() {
			return l.readADBuiltinChain(ctx, c, emit)
		}
		return nil
	})
}

func (l *LDAP) readADBuiltinChain(ctx context.Context, c *conn, emit func(*entry) error) error {
	builtinUsers := "CN=Users,CN=Builtin," + l.s.baseDN
	base := func(dn string, attrs []string, fn func(*entry) error) error {
		req := ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
			0, timeLimitSeconds(l.s.timeout), false, "(objectClass=*)", attrs, nil)
		return l.search(ctx, c, "read_groups", req, 0, fn)
	}
	if err := base(builtinUsers, groupAttributes(), emit); err != nil {
		return err
	}
	chain := ldap.NewSearchRequest(l.s.baseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		0, timeLimitSeconds(l.s.timeout), false,
		"(&(objectClass=group)(memberOf:"+matchingRuleInChain+":="+ldap.EscapeFilter(builtinUsers)+"))",
		groupAttributes(), nil)
	if err := l.search(ctx, c, "read_groups", chain, l.s.pageSize, emit); err != nil {
		return err
	}
	// Domain Users normally is in that chain; read it by SID anyway, since
	// primaryGroupID 513 is how most users reach Builtin\Users.
	var domainSID string
	if err := base(l.s.baseDN, []string{"objectSid"}, func(e *entry) error {
		domainSID, _ = formatSID(e.firstRaw("objectSid"))
		return nil
	}); err != nil {
		return err
	}
	if domainSID == "" {
		return &ReadError{Op: "read_groups", URL: c.url, Kind: KindLDAPError, Class: ErrIncompleteRead,
			Err: fmt.Errorf("base %q has no objectSid: is this an Active Directory domain?", l.s.baseDN)}
	}
	sid, err := encodeSID(domainSID + "-" + strconv.Itoa(ridDomainUsers))
	if err != nil {
		return err
	}
	du := ldap.NewSearchRequest(l.s.baseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		0, timeLimitSeconds(l.s.timeout), false, "(&(objectClass=group)(objectSid="+escapeBytes(sid)+"))",
		groupAttributes(), nil)
	return l.search(ctx, c, "read_groups", du, l.s.pageSize, emit)
}

func (l *LDAP) toGroup(ctx context.Context, c *conn, e *entry) (Group, error) {
	g := Group{
		DN:         e.DN,
		Name:       e.first("cn"),
		MemberUIDs: e.values("memberUid"),
		MemberOf:   e.values("memberOf"),
	}
	g.SID, _ = formatSID(e.firstRaw("objectSid"))
	g.Members = append(g.Members, e.values("member")...)
	for _, v := range e.values("uniqueMember") {
		g.Members = append(g.Members, stripOptionalUID(v))
	}
	for _, a := range e.Attrs {
		if r, ok := parseRange(a.Name, "member"); ok {
			for _, v := range a.Vals {
				g.Members = append(g.Members, string(v))
			}
			if !r.last {
				more, err := l.readRange(ctx, c, e.DN, r.high+1)
				if err != nil {
					return Group{}, err
				}
				g.Members = append(g.Members, more...)
			}
		}
	}
	return g, nil
}

// stripOptionalUID drops the "#'0101'B" suffix uniqueMember may carry
// (RFC 4517 NameAndOptionalUID), leaving the DN.
func stripOptionalUID(v string) string {
	if i := strings.LastIndex(v, "#'"); i > 0 && v[i-1] != '\\' && strings.HasSuffix(v, "'B") {
		return v[:i]
	}
	return v
}

type valueRange struct {
	low, high int
	last      bool
}

// parseRange reads an AD ranged attribute name: "member;range=0-1499", or
// "member;range=1500-*" for the last slice.
func parseRange(name, attr string) (valueRange, bool) {
	prefix := attr + ";range="
	if len(name) <= len(prefix) || !strings.EqualFold(name[:len(prefix)], prefix) {
		return valueRange{}, false
	}
	lo, hi, ok := strings.Cut(name[len(prefix):], "-")
	if !ok {
		return valueRange{}, false
	}
	var r valueRange
	var err error
	if r.low, err = strconv.Atoi(lo); err != nil {
		return valueRange{}, false
	}
	if hi == "*" {
		return valueRange{low: r.low, high: -1, last: true}, true
	}
	if r.high, err = strconv.Atoi(hi); err != nil || r.high < r.low {
		return valueRange{}, false
	}
	return r, true
}

// readRange fetches the remaining values of a group's member attribute with
// AD range retrieval (MaxValRange, 1500 by default): base-scope reads of
// member;range=N-* until the server answers a range ending in "*".
func (l *LDAP) readRange(ctx context.Context, c *conn, dn string, from int) ([]string, error) {
	var out []string
	for {
		attr := "member;range=" + strconv.Itoa(from) + "-*"
		var got *valueRange
		req := ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
			0, timeLimitSeconds(l.s.timeout), false, "(objectClass=*)", []string{attr}, nil)
		err := l.search(ctx, c, "read_groups", req, 0, func(e *entry) error {
			for _, a := range e.Attrs {
				if r, ok := parseRange(a.Name, "member"); ok {
					got = &r
					for _, v := range a.Vals {
						out = append(out, string(v))
					}
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		// Without the slice we asked for, or one starting elsewhere, the
		// member list would silently be short.
		if got == nil || got.low != from {
			return nil, &ReadError{Op: "read_groups", URL: c.url, Kind: KindMissingPage, Class: ErrIncompleteRead,
				Err: fmt.Errorf("range retrieval of %q: asked for %s, got %v", dn, attr, got)}
		}
		if got.last {
			return out, nil
		}
		from = got.high + 1
	}
}

// objectSearchFilter is (&<user_object_filter>[extra]): every user entry,
// in user_filter or not (ReadUsers marks the others OutOfScope), where
// settings.userSearchFilter is only those in scope.
func (s *settings) objectSearchFilter(extra string) string {
	return "(&" + s.userObjectFilter + extra + ")"
}
