package badgerstore

import (
	"strings"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
)

// listValue is the value of a ul/ key: what ListUsers and CountUsers filter
// on, readable without decoding the user.
func listValue(u *account.User) []byte {
	return []byte(string(u.State) + "\x00" + u.Role + "\x00" + string(u.Source))
}

type listEntry struct {
	state, role, source string
}

func parseListValue(b []byte) listEntry {
	state, rest, _ := strings.Cut(string(b), "\x00")
	role, source, _ := strings.Cut(rest, "\x00")
	return listEntry{state, role, source}
}

func (e listEntry) match(f cache.UserFilter) bool {
	return (f.State == "" || e.state == f.State) &&
		(f.Role == "" || e.role == f.Role) &&
		(f.Source == "" || e.source == f.Source)
}
