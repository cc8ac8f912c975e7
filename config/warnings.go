package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"
)

// Warnings lists what is allowed but probably not meant, with the same
// paths and lines as errors. The caller logs them at start.
//
// Two directories with the same login domain are a warning, not an error:
// SPEC §5 defines that case (a `username@domain` login is ambiguous, 400,
// and the user picks the directory with "directory"), and it is a real
// setup (two OUs of one AD forest declared as two directories with their
// own filters and role mappings). Refusing it would forbid what the login
// API was designed to handle; staying silent would let an operator wonder
// why user@domain logins answer 400.
func (c *Config) Warnings() []FieldError {
	col := &collector{lines: c.lines.get()}
	if !c.SecureCookie() {
		col.add("session.secure_cookie", "false: the session cookie is also sent over plain HTTP; use only for local tests")
	}
	for i, p := range c.PublicPaths {
		if p == "/" {
			col.add(fmt.Sprintf("public_paths[%d]", i), `"/" makes every path public: the proxy checks no session`)
		}
	}
	byDomain := map[string]int{}
	for i := range c.Directories {
		d := &c.Directories[i]
		p := fmt.Sprintf("directories[%d]", i)
		if dom := d.DomainName(); dom != "" {
			if j, dup := byDomain[dom]; dup {
				col.add(p+".domain", "login domain %q is also the domain of directories[%d] (%s): username@%s logins are ambiguous (400) and must name the directory", dom, j, c.Directories[j].Name, dom)
			} else {
				byDomain[dom] = i
			}
		}
		if d.AutoSync != nil && *d.AutoSync && strings.TrimSpace(d.Schedule) == "" {
			// A warning, not an error: an API PATCH that clears the schedule
			// of a directory with auto_sync: true must not be refused.
			col.add(p+".auto_sync", "true but no schedule is set: nothing runs automatically")
		}
		if d.Naming == NamingEmail {
			col.add(p+".naming", "email is the legacy naming; migrate with POST /auth/v4/ldap/{id}/migrate, then set username_at_domain")
		}
		if d.TLS.InsecureSkipVerify {
			col.add(p+".tls.insecure_skip_verify", "certificate verification is off: anyone on the path can read bind passwords; set tls.ca_file instead")
		}
		for j, u := range d.URLs {
			if strings.HasPrefix(u, "ldap://") && !d.StartTLS && !isLoopbackURL(u) {
				col.add(fmt.Sprintf("%s.urls[%d]", p, j), "%q without start_tls sends passwords in clear text", u)
			}
		}
	}
	sortByLine(col.errs)
	return col.errs
}

func isLoopbackURL(u string) bool {
	parsed, err := url.Parse(u)
	if err != nil {
		return false
	}
	host := parsed.Hostname()
	if host == "localhost" {
		return true
	}
	// A parsed address, not a prefix: "127.evil.example" is a host name
	// anyone can point anywhere.
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
