package auth

import (
	"strings"
	"unicode/utf8"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/directory"
)

// MaxNameLen bounds login names and directory references: longer input is
// refused before it reaches the store or an LDAP filter.
const MaxNameLen = 256

// LoginName is a parsed login name (SPEC §5 directory choice).
type LoginName struct {
	// Canonical is the store username the login is for (SPEC §3),
	// normalised with account.NormalizeName. A local user with this name
	// logs in with their stored hash.
	Canonical string
	// Username is what the directory is searched for: the login
	// attribute's value (uid, sAMAccountName), or the mail address under
	// legacy naming (ByMail). Empty when no directory fits.
	Username string
	// Dir is the directory to bind against; nil when the name can only be
	// a local user.
	Dir *directory.Entry
	// ByMail: Dir uses legacy `naming: email`; Username is a mail address.
	ByMail bool
	// Ambiguous: several directories share the name's domain and the
	// request picked none. Only an error if no local user has the name.
	Ambiguous bool
}

// validText refuses what never belongs in a login name: control
// characters and NUL (they truncate C strings and split log lines),
// invalid UTF-8, and anything longer than MaxNameLen bytes.
func validText(s string) bool {
	if len(s) > MaxNameLen || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' {
			return false
		}
	}
	return true
}

// ParseLoginName applies SPEC §5's directory choice to a login name and
// the request's optional directory (id or name):
//
//   - directory given: "user" or "user@<its domain>" log in there; a
//     name with another domain can only be a local user.
//   - no directory: "user@domain" goes to the directory whose domain
//     matches (several: Ambiguous); a name without '@', or with a domain no
//     directory has, can only be a local user.
//
// Directories under legacy naming take any mail address, but only when no
// directory claims the domain. dirRef is resolved with dirs.ByRef (an id
// first, then a name); without one the domain is matched against
// dirs.List(). Either way one call reads one snapshot of the set.
func ParseLoginName(name, dirRef string, dirs *directory.Set) (LoginName, error) {
	if !validText(name) || !validText(dirRef) {
		return LoginName{}, ErrInvalidName
	}
	n := account.NormalizeName(name)
	if n == "" {
		return LoginName{}, ErrInvalidName
	}
	user, domain, hasAt := cutLast(n, '@')
	if hasAt && (user == "" || domain == "") {
		return LoginName{}, ErrInvalidName
	}
	out := LoginName{Canonical: n}

	if ref := strings.TrimSpace(dirRef); ref != "" {
		e, ok := dirs.ByRef(ref)
		if !ok {
			return LoginName{}, ErrUnknownDirectory
		}
		switch {
		case e.Config.Naming == config.NamingEmail:
			if hasAt {
				out.Dir, out.Username, out.ByMail = e, n, true
			}
		case !hasAt:
			dom := strings.ToLower(e.Config.DomainName())
			if dom == "" {
				return out, nil
			}
			out.Dir, out.Username, out.Canonical = e, n, n+"@"+dom
		case strings.EqualFold(domain, e.Config.DomainName()):
			out.Dir, out.Username = e, user
		}
		return out, nil
	}

	if !hasAt {
		return out, nil
	}
	var match, mail []*directory.Entry
	for _, e := range dirs.List() {
		if e.Config.Naming == config.NamingEmail {
			mail = append(mail, e)
		} else if strings.EqualFold(domain, e.Config.DomainName()) {
			match = append(match, e)
		}
	}
	switch {
	case len(match) == 1:
		out.Dir, out.Username = match[0], user
	case len(match) > 1:
		out.Ambiguous = true
	case len(mail) == 1:
		out.Dir, out.Username, out.ByMail = mail[0], n, true
	case len(mail) > 1:
		out.Ambiguous = true
	}
	return out, nil
}

// cutLast splits at the last sep: user names may contain '@', domains not.
func cutLast(s string, sep byte) (before, after string, found bool) {
	if i := strings.LastIndexByte(s, sep); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}
