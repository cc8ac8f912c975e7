package ldaptest

import (
	"bufio"
	"fmt"
	"os"

	"github.com/ldapgate/ldapgate/config"
)

// Bulk subtree of StartSlapdWith(SlapdOptions{BulkUsers: N}).
const (
	bulkUsersRDN   = "ou=bulk"
	bulkGroupsRDN  = "ou=bulkgroups"
	bulkGroupsDflt = 10
)

// BulkUserLogin is the uid of bulk user i (0-based): bulk00000, bulk00001...
func BulkUserLogin(i int) string { return fmt.Sprintf("bulk%05d", i) }

// BulkGroupDN is the DN of bulk group g on s: cn=bulkgrp000,ou=bulkgroups,...
// Bulk user i is a member of group i mod BulkGroups.
func BulkGroupDN(s *Server, g int) string {
	return fmt.Sprintf("cn=bulkgrp%03d,%s,%s", g, bulkGroupsRDN, s.BaseDN)
}

// BulkDirectory is a directory config for the bulk subtree of s, for
// benchmarks and load tests: members of bulkgrp000 map to "user", everyone
// else gets default_role "user" too, so all bulk users sync; page_size 500.
func BulkDirectory(s *Server) config.Directory {
	return config.Directory{
		Name:               "bulk",
		Type:               config.TypeLDAP,
		URLs:               []string{s.URL},
		BaseDN:             s.BaseDN,
		BindDN:             s.AdminDN,
		BindPassword:       config.Secret(s.AdminPassword),
		UsersDN:            bulkUsersRDN,
		GroupsDN:           bulkGroupsRDN,
		RoleMapping:        map[string][]string{"user": {BulkGroupDN(s, 0)}},
		DefaultRole:        "user",
		Domain:             "example.com",
		PageSize:           500,
		Naming:             config.NamingUsernameAtDomain,
		GroupNameAttribute: "cn",
	}
}

// writeBulkLDIF streams the bulk subtree to path for slapadd. slapadd runs no
// overlays, so memberOf is written here, matching what the memberof overlay
// would have kept.
func writeBulkLDIF(path string, opts SlapdOptions) (err error) {
	groups := opts.BulkGroups
	if groups <= 0 {
		groups = bulkGroupsDflt
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close %s: %w", path, cerr)
		}
	}()
	w := bufio.NewWriterSize(f, 1<<20)
	base := slapdBaseDN
	usersDN := bulkUsersRDN + "," + base
	groupsDN := bulkGroupsRDN + "," + base
	groupDN := func(g int) string { return fmt.Sprintf("cn=bulkgrp%03d,%s", g, groupsDN) }

	fmt.Fprintf(w, "dn: %s\nobjectClass: organizationalUnit\nou: bulk\n\n", usersDN)
	fmt.Fprintf(w, "dn: %s\nobjectClass: organizationalUnit\nou: bulkgroups\n\n", groupsDN)
	for i := range opts.BulkUsers {
		uid := BulkUserLogin(i)
		fmt.Fprintf(w, "dn: uid=%s,%s\nobjectClass: inetOrgPerson\nuid: %s\ncn: Bulk User %d\nsn: User%d\nmail: %s@example.com\nuserPassword: %s\nmemberOf: %s\n\n",
			uid, usersDN, uid, i, i, uid, Password, groupDN(i%groups))
	}
	for g := range groups {
		fmt.Fprintf(w, "dn: %s\nobjectClass: groupOfNames\ncn: bulkgrp%03d\n", groupDN(g), g)
		if g >= opts.BulkUsers {
			// groupOfNames must have a member; the empty DN means nobody.
			fmt.Fprintf(w, "member:\n")
		}
		for i := g; i < opts.BulkUsers; i += groups {
			fmt.Fprintf(w, "member: uid=%s,%s\n", BulkUserLogin(i), usersDN)
		}
		w.WriteString("\n")
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
