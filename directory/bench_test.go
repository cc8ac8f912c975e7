package directory

import (
	"context"
	"io"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/ldapgate/ldapgate/internal/ldaptest"
)

// BenchmarkReadUsers10k reads 10,000 users from a local slapd with
// ReadUsers (page size 500) and, in the same run, with a paged ldapsearch of
// the same base, filter and attributes (output discarded), and reports both
// rates and their ratio (issue 2: the client should add at most 25%).
//
//	go test -run '^$' -bench ReadUsers10k -benchtime 5x ./directory/
func BenchmarkReadUsers10k(b *testing.B) {
	const users = 10000
	ldapsearch, err := exec.LookPath("ldapsearch")
	if err != nil {
		ldaptest.Missing(b, "ldapsearch not installed (apt-get install ldap-utils)")
		return
	}
	s := ldaptest.StartSlapdWith(b, ldaptest.SlapdOptions{BulkUsers: users})
	cfg := ldaptest.BulkDirectory(s)
	l, err := Open(cfg, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()

	args := append([]string{"-x", "-H", s.URL, "-D", s.AdminDN, "-w", s.AdminPassword,
		"-b", l.s.usersBase, "-s", "sub", "-E", "pr=" + strconv.Itoa(l.s.pageSize) + "/noprompt",
		l.s.userSearchFilter("")}, l.s.userAttributes()...)
	runLdapsearch := func() time.Duration {
		cmd := exec.CommandContext(ctx, ldapsearch, args...)
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		start := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatalf("ldapsearch: %v", err)
		}
		return time.Since(start)
	}
	readAll := func() time.Duration {
		n := 0
		start := time.Now()
		if err := l.ReadUsers(ctx, func(User) error { n++; return nil }); err != nil {
			b.Fatalf("ReadUsers: %v", err)
		}
		d := time.Since(start)
		if n != users {
			b.Fatalf("ReadUsers read %d users, want %d", n, users)
		}
		return d
	}
	// Warm both (slapd's caches, the pooled connection) so neither pays
	// for the other's first read.
	readAll()
	runLdapsearch()

	var client, tool time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		client += readAll()
		b.StopTimer()
		tool += runLdapsearch()
		b.StartTimer()
	}
	b.StopTimer()
	n := float64(b.N) * users
	b.ReportMetric(n/client.Seconds(), "users/s")
	b.ReportMetric(n/tool.Seconds(), "ldapsearch_users/s")
	b.ReportMetric(client.Seconds()/tool.Seconds(), "ratio_vs_ldapsearch")
}
