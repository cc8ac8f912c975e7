package e2e

import "github.com/go-ldap/ldap/v3"

func modifyMail(conn *ldap.Conn, dn, mail string) error {
	req := ldap.NewModifyRequest(dn, nil)
	req.Replace("mail", []string{mail})
	return conn.Modify(req)
}
