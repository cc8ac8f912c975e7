package ldaptest

import (
	"fmt"

	"github.com/ldapgate/ldapgate/config"
)

// The read-only OU=big tree scripts/test-ldap/samba.sh seeds once per run
// (keep in step with BIG_USERS there). Its sizes exceed AD's limits, which
// SharedSamba's proxy enforces: BigSambaUsers > ADMaxPageSize forces paging,
// BigSambaGroupMembers > ADMaxValRange forces range retrieval of
// CN=bigstaff's member attribute.
const (
	// BigSambaUsers users big0000 … big1599 live directly in OU=big, enabled,
	// with Password and mail <name>@example.com.
	BigSambaUsers = 1600
	// BigSambaGroupMembers is the member count of CN=bigstaff,OU=big: every
	// big user.
	BigSambaGroupMembers = BigSambaUsers
	// BigSambaGroup is the group's cn (and sAMAccountName).
	BigSambaGroup = "bigstaff"
)

// BigSambaLogin is the sAMAccountName of the i-th big user (0-based).
func BigSambaLogin(i int) string { return fmt.Sprintf("big%04d", i) }

// BigSambaDirectory is a directory config for the OU=big tree of s (from
// SharedSamba): every big user is mapped to role user through bigstaff, pages
// of 1000 (AD's maximum), logins <bigNNNN>@example.com. Tests must not change
// the tree: every package's tests share it.
func BigSambaDirectory(s *Server) config.Directory {
	return config.Directory{
		Name:         "samba-big",
		Type:         config.TypeActiveDirectory,
		URLs:         []string{s.URL},
		TLS:          config.TLS{CAFile: s.CAFile},
		BaseDN:       s.BaseDN,
		BindDN:       s.AdminDN,
		BindPassword: config.Secret(s.AdminPassword),
		UsersDN:      "OU=big",
		GroupsDN:     "OU=big",
		RoleMapping: map[string][]string{
			"user": {BigSambaGroupDN(s)},
		},
		DefaultRole: "",
		Domain:      "example.com",
		PageSize:    ADMaxPageSize,
		Naming:      config.NamingUsernameAtDomain,
		// GroupNameAttribute left to the type default; set it to "cn" to
		// make a reader fetch bigstaff's member list (range retrieval).
	}
}

// BigSambaGroupDN is the DN of CN=bigstaff,OU=big on s.
func BigSambaGroupDN(s *Server) string { return "CN=" + BigSambaGroup + ",OU=big," + s.BaseDN }
