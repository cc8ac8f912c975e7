package conformance

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/internal/ldaptest"
	"github.com/ldapgate/ldapgate/syncer"
)

// The benchmark's own tree on the shared Samba: benchUsers users directly in
// OU=<benchOU>, all members of CN=<benchGroup> (mapped to role user). Built
// once by the benchmark's setup and reused by later runs against the same
// server; tests never touch it.
const (
	benchOU    = "conformance-bench5k"
	benchGroup = "bench5kstaff"
	benchUsers = 5000
)

// The tree samba.sh seeds offline when started with SAMBA_BENCH_USERS=5000
// (OU=bench, CN=benchstaff): the same shape, loaded in seconds instead of
// minutes, so the benchmark prefers it when it is there.
const (
	scriptBenchOU    = "bench"
	scriptBenchGroup = "benchstaff"
)

func benchLogin(i int) string { return fmt.Sprintf("cb%05d", i) }

// benchLDIF is the whole tree as one LDIF for ldapadd. No passwords:
// userAccountControl 544 (NORMAL_ACCOUNT|PASSWD_NOTREQD) makes an enabled
// account without one, and skips the per-user Kerberos key derivation that
// makes password-carrying adds slow on Samba. The group comes last, naming
// every user.
func benchLDIF(base string) []byte {
	var b bytes.Buffer
	ou := "OU=" + benchOU + "," + base
	fmt.Fprintf(&b, "dn: %s\nobjectClass: organizationalUnit\n\n", ou)
	for i := range benchUsers {
		u := benchLogin(i)
		fmt.Fprintf(&b, "dn: CN=%s,%s\nobjectClass: user\nsAMAccountName: %s\n", u, ou, u)
		fmt.Fprintf(&b, "mail: %s@example.com\ndisplayName: %s Bench\nuserAccountControl: 544\n\n", u, u)
	}
	fmt.Fprintf(&b, "dn: CN=%s,%s\nobjectClass: group\nsAMAccountName: %s\ngroupType: -2147483646\n", benchGroup, ou, benchGroup)
	for i := range benchUsers {
		fmt.Fprintf(&b, "member: CN=%s,%s\n", benchLogin(i), ou)
	}
	b.WriteString("\n")
	return b.Bytes()
}

// sambaDirect is Samba's own endpoint (not ldaptest's AD-limits proxy,
// whose in-process copying would tax both sides of the comparison).
type sambaDirect struct{ url, base, adminDN, adminPassword string }

func sambaDirectFromEnv(tb testing.TB) sambaDirect {
	tb.Helper()
	d := sambaDirect{os.Getenv("LDAPGATE_TEST_SAMBA_URL"), os.Getenv("LDAPGATE_TEST_SAMBA_BASE"),
		os.Getenv("LDAPGATE_TEST_SAMBA_ADMIN_DN"), os.Getenv("LDAPGATE_TEST_SAMBA_ADMIN_PASSWORD")}
	if d.url == "" || d.base == "" || d.adminDN == "" {
		ldaptest.Missing(tb, "Samba AD DC: LDAPGATE_TEST_SAMBA_* unset")
	}
	return d
}

// benchTreeComplete counts the users of OU=ou and the members of its group.
func benchTreeComplete(tb testing.TB, d sambaDirect, ouName, group string) (users, members int) {
	tb.Helper()
	c, err := ldap.DialURL(d.url)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	c.SetTimeout(time.Minute)
	if err := c.Bind(d.adminDN, d.adminPassword); err != nil {
		tb.Fatal(err)
	}
	ou := "OU=" + ouName + "," + d.base
	res, err := c.SearchWithPaging(ldap.NewSearchRequest(ou, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		0, 0, false, "(objectClass=user)", []string{"1.1"}, nil), 1000)
	if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		return 0, 0
	}
	if err != nil {
		tb.Fatalf("count %s: %v", ou, err)
	}
	users = len(res.Entries)
	// Samba hands out every value unless asked for a range.
	g, err := c.Search(ldap.NewSearchRequest("CN="+group+","+ou, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		0, 0, false, "(objectClass=group)", []string{"member"}, nil))
	if err == nil && len(g.Entries) == 1 {
		members = len(g.Entries[0].GetAttributeValues("member"))
	}
	return users, members
}

// ensureBenchTree returns the OU and group of a complete tree: the
// script's, else the benchmark's own, loaded with one ldapadd -c over LDAP
// unless it is there already (ldapadd -c skips what exists, so an
// interrupted load is completed, except for a half-written group, which is
// reported).
func ensureBenchTree(b *testing.B, d sambaDirect) (ou, group string) {
	b.Helper()
	if u, m := benchTreeComplete(b, d, scriptBenchOU, scriptBenchGroup); u == benchUsers && m == benchUsers {
		return scriptBenchOU, scriptBenchGroup
	}
	if u, m := benchTreeComplete(b, d, benchOU, benchGroup); u == benchUsers && m == benchUsers {
		return benchOU, benchGroup
	}
	start := time.Now()
	cmd := exec.Command("ldapadd", "-c", "-x", "-H", d.url, "-D", d.adminDN, "-w", d.adminPassword)
	cmd.Stdin = bytes.NewReader(benchLDIF(d.base))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = nil, &out
	// With -c, ldapadd exits non-zero for entries that already exist:
	// the counts below decide.
	_ = cmd.Run()
	if u, m := benchTreeComplete(b, d, benchOU, benchGroup); u != benchUsers || m != benchUsers {
		b.Fatalf("after ldapadd: %d users, group of %d members, want %d each (delete OU=%s to rebuild): %s",
			u, m, benchUsers, benchOU, lastLines(out.String(), 5))
	}
	b.Logf("loaded %d users into OU=%s in %s", benchUsers, benchOU, time.Since(start).Round(time.Millisecond))
	return benchOU, benchGroup
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// dnCounter counts LDIF records ("dn:" at the start of a line) in
// ldapsearch's output without keeping it.
type dnCounter struct {
	n   int
	bol bool // at the beginning of a line
	buf []byte
}

func (w *dnCounter) Write(p []byte) (int, error) {
	for _, c := range p {
		if w.bol || w.buf != nil {
			w.buf = append(w.buf, c)
			if len(w.buf) == 3 {
				if string(w.buf) == "dn:" {
					w.n++
				}
				w.buf = nil
			}
		}
		w.bol = c == '\n'
		if w.bol {
			w.buf = nil
		}
	}
	return len(p), nil
}

// BenchmarkSambaSync5000 (issue 6): a full sync of 5,000 AD users from
// Samba — read users (paged, 1000 a page), read groups (the 5,000-member
// group, Builtin\Users chain, Domain Users), plan, write 5,000 new store
// users with their audit entries — against `ldapsearch` reading the same
// entries (same base, filter, attributes, paged with -E pr=1000/noprompt,
// simple bind as the admin) in the same run. ns/op is the first sync into
// an empty store; the metrics report both, their ratio, and the unchanged
// re-sync that follows (the steady state of a scheduled sync).
//
//	eval "$(SAMBA_BENCH_USERS=5000 scripts/test-ldap/samba.sh start /tmp/ldapgate-samba)"
//	go test ./conformance -run '^$' -bench BenchmarkSambaSync5000 -benchtime 3x
//
// Without SAMBA_BENCH_USERS the setup loads its own tree over LDAP, once per
// server (minutes: Samba commits every add separately).
func BenchmarkSambaSync5000(b *testing.B) {
	if ldaptest.SharedSamba(b) == nil {
		return
	}
	d := sambaDirectFromEnv(b)
	ou, group := ensureBenchTree(b, d)

	cfg := config.Directory{
		ID:           1,
		Name:         "samba-bench",
		Type:         config.TypeActiveDirectory,
		URLs:         []string{d.url},
		BaseDN:       d.base,
		BindDN:       d.adminDN,
		BindPassword: config.Secret(d.adminPassword),
		UsersDN:      "OU=" + ou,
		GroupsDN:     "OU=" + ou,
		RoleMapping:  map[string][]string{"user": {"CN=" + group + ",OU=" + ou + "," + d.base}},
		Domain:       "example.com",
		PageSize:     config.MaxPageSizeAD,
	}
	cfg.ApplyDefaults()
	// What ReadUsers asks for (directory/settings.go userAttributes).
	filter := "(&" + cfg.UserObjectFilter + cfg.UserFilter + ")"
	attrs := []string{cfg.UsernameAttribute, cfg.UUIDAttribute, cfg.EmailAttribute, cfg.DisplayNameAttribute,
		"memberOf", "primaryGroupID", "userAccountControl"}
	args := append([]string{"-x", "-LLL", "-H", d.url, "-D", d.adminDN, "-w", d.adminPassword,
		"-b", cfg.UsersBase(), "-s", "sub", "-E", "pr=" + strconv.Itoa(cfg.PageSize) + "/noprompt", filter}, attrs...)
	ldapsearch := func() time.Duration {
		var w dnCounter
		w.bol = true
		cmd := exec.Command("ldapsearch", args...)
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &w, &stderr
		start := time.Now()
		err := cmd.Run()
		el := time.Since(start)
		if err != nil || w.n != benchUsers {
			b.Fatalf("ldapsearch: %v, %d entries, want %d: %s", err, w.n, benchUsers, lastLines(stderr.String(), 3))
		}
		return el
	}
	b.Logf("baseline: ldapsearch %s", strings.ReplaceAll(strings.Join(args, " "), d.adminPassword, "***"))

	ldapsearch() // warm Samba's caches for both sides alike
	ctx := context.Background()
	var tSync, tSearch, tResync time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		tSearch += ldapsearch()
		env := newSyncEnv(b, cfg)
		b.StartTimer()
		start := time.Now()
		run, err := env.syncer.Sync(ctx, cfg.ID, syncer.Options{Trigger: syncer.TriggerAPI})
		tSync += time.Since(start)
		b.StopTimer()
		if err != nil || run.DirectoryUsers != benchUsers || run.Counts[string(syncer.ActionCreate)] != benchUsers {
			b.Fatalf("sync: %v; read %d, counts %v; want %d created", err, run.DirectoryUsers, run.Counts, benchUsers)
		}
		start = time.Now()
		run, err = env.syncer.Sync(ctx, cfg.ID, syncer.Options{Trigger: syncer.TriggerAPI})
		tResync += time.Since(start)
		if err != nil || run.Counts[string(syncer.ActionUnchanged)] != benchUsers {
			b.Fatalf("re-sync: %v; counts %v; want %d unchanged", err, run.Counts, benchUsers)
		}
		b.StartTimer()
	}
	b.StopTimer()
	n := float64(b.N)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / n }
	b.ReportMetric(ms(tSync), "sync_ms")
	b.ReportMetric(ms(tResync), "resync_ms")
	b.ReportMetric(ms(tSearch), "ldapsearch_ms")
	b.ReportMetric(float64(tSync)/float64(tSearch), "sync/ldapsearch")
	b.ReportMetric(float64(tResync)/float64(tSearch), "resync/ldapsearch")
}
