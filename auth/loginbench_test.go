package auth

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/internal/ldaptest"
)

// BenchmarkLoginVsRawBind compares a full ldapgate login (limits, name
// parsing, local-user check, service-account search and user bind through
// the directory client, store look-ups, last_login_at and session writes
// to badger) with the bare minimum a program can do with go-ldap against
// the same slapd: one search on a kept service connection, then a bind on
// a fresh connection. Both alternate in one loop so they see the same
// machine load (issue 4, benchmark c; target: ldapgate ≥ 0.8× raw).
//
//	go test -run '^$' -bench LoginVsRawBind -benchtime 2000x ./auth
//
// Reported: gate-ns/login and raw-ns/login (means), gate-p99-ns and
// raw-p99-ns, and ratio = raw mean / gate mean (throughput of ldapgate
// relative to raw, serial).
func BenchmarkLoginVsRawBind(b *testing.B) {
	e := newEnv(b, nil, nil)
	if e == nil {
		return
	}
	ctx := context.Background()
	name := e.fx.Login("bob")
	uid := e.fx.Users["bob"]
	pw := ldaptest.Password

	svcConn, err := ldap.DialURL(e.srv.URL, ldap.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}))
	if err != nil {
		b.Fatal(err)
	}
	defer svcConn.Close()
	if err := svcConn.Bind(e.srv.AdminDN, e.srv.AdminPassword); err != nil {
		b.Fatal(err)
	}
	usersBase := e.fx.Dir.UsersDN + "," + e.fx.Dir.BaseDN
	raw := func() {
		res, err := svcConn.Search(ldap.NewSearchRequest(usersBase, ldap.ScopeWholeSubtree, ldap.DerefAlways, 2, 30, false,
			"(&(objectClass=person)(uid="+ldap.EscapeFilter(uid)+"))",
			[]string{"uid", "mail", "cn", "entryUUID", "memberOf", "pwdAccountLockedTime"}, nil))
		if err != nil || len(res.Entries) != 1 {
			b.Fatalf("raw search: %v", err)
		}
		c, err := ldap.DialURL(e.srv.URL, ldap.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}))
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Bind(res.Entries[0].DN, pw); err != nil {
			b.Fatalf("raw bind: %v", err)
		}
		c.Close()
	}
	gate := func() {
		if _, err := e.svc.Login(ctx, LoginRequest{Name: name, Password: pw, ClientIP: ip1}); err != nil {
			b.Fatalf("login: %v", err)
		}
	}
	for range 20 { // warm pools and caches
		raw()
		gate()
	}
	gateLat := make([]time.Duration, 0, b.N)
	rawLat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		// Alternate which goes first so neither always meets a just-idle server.
		if i%2 == 0 {
			t := time.Now()
			gate()
			gateLat = append(gateLat, time.Since(t))
			t = time.Now()
			raw()
			rawLat = append(rawLat, time.Since(t))
		} else {
			t := time.Now()
			raw()
			rawLat = append(rawLat, time.Since(t))
			t = time.Now()
			gate()
			gateLat = append(gateLat, time.Since(t))
		}
	}
	b.StopTimer()
	gm, gp := stats(gateLat)
	rm, rp := stats(rawLat)
	b.ReportMetric(float64(gm), "gate-ns/login")
	b.ReportMetric(float64(rm), "raw-ns/login")
	b.ReportMetric(float64(gp), "gate-p99-ns")
	b.ReportMetric(float64(rp), "raw-p99-ns")
	b.ReportMetric(float64(rm)/float64(gm), "ratio")
}

func stats(d []time.Duration) (mean, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return sum / time.Duration(len(s)), s[min(len(s)-1, len(s)*99/100)]
}
