package syncer

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/cache/badgerstore"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/directory"
	"github.com/ldapgate/ldapgate/internal/ldaptest"
)

// BenchmarkFirstSync100k is issue 3's benchmark: 100,000 users in 100
// groups loaded into slapd with slapadd; a first sync into an empty store
// against a paged ldapsearch of the same entries (same attributes, same page
// size) timed in the same run, the process's peak RSS during the sync, and
// an unchanged re-sync (which must write no user). Run it alone:
//
//	go test ./syncer -run '^$' -bench FirstSync100k -benchtime 1x -timeout 30m
//
// Targets: sync ≤ 2× ldapsearch, peak RSS ≤ 300 MiB, re-sync ≤ 1.5×
// ldapsearch with 0 users written. Also reported, without a target: a
// third sync after a default_role change, which updates ~99% of the users.
func BenchmarkFirstSync100k(b *testing.B) {
	users, groups := 100_000, 100
	// LDAPGATE_BENCH_USERS shrinks the run for profiling.
	if n, err := strconv.Atoi(os.Getenv("LDAPGATE_BENCH_USERS")); err == nil && n > 0 {
		users = n
	}
	if _, err := exec.LookPath("ldapsearch"); err != nil {
		ldaptest.Missing(b, "ldapsearch not installed (ldap-utils)")
	}
	srv := ldaptest.StartSlapdWith(b, ldaptest.SlapdOptions{BulkUsers: users, BulkGroups: groups})
	dir := ldaptest.BulkDirectory(srv)
	dir.ID = 1
	dir.ApplyDefaults()
	client, err := directory.Open(dir, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	set := directory.NewSet()
	set.Replace([]*directory.Entry{{Config: dir, Client: client}})
	ctx := context.Background()

	// LDAPGATE_BENCH_HEAPPROFILE=prefix writes the live heap (after a
	// forced GC, so it slows the run) when the apply starts and halfway
	// through it, where the RSS peaks: prefix.start, prefix.half (and
	// /proc/self/smaps next to each, as prefix.start.smaps...).
	if prefix := os.Getenv("LDAPGATE_BENCH_HEAPPROFILE"); prefix != "" {
		testHookAfterBatch = func(done int) {
			switch {
			case done == defaultBatch:
				writeHeapProfile(b, prefix+".start")
			case done == users/2:
				writeHeapProfile(b, prefix+".half")
			}
		}
		defer func() { testHookAfterBatch = nil }()
	}

	// Warm slapd's caches the same way for both sides.
	ldapsearchTime(b, srv, dir)

	for range b.N {
		store, err := badgerstore.Open(b.TempDir(), nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		s := New(store.Backend(), set, config.DefaultRoles(), testLogger(b), nil)
		// ldapsearch right before and right after each sync, averaged: on a
		// shared machine the load changes within seconds.
		search1 := ldapsearchTime(b, srv, dir)
		runtime.GC()
		resetPeakRSS(b)
		stopSampling := sampleRSS()
		start := time.Now()
		run, err := s.Sync(ctx, dir.ID, Options{})
		first := time.Since(start)
		peak := peakRSS(b)
		anon, file := stopSampling()
		if err != nil || run.Counts["create"] != users {
			b.Fatalf("first sync: %v %+v", err, run)
		}
		search2 := ldapsearchTime(b, srv, dir)
		search := (search1 + search2) / 2
		runtime.GC()
		start = time.Now()
		again, err := s.Sync(ctx, dir.ID, Options{})
		resync := time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		search3 := ldapsearchTime(b, srv, dir)
		resyncSearch := (search2 + search3) / 2
		written := writes(again)
		audit, _ := store.RunChanges(ctx, again.ID)

		// A settings change that rewrites nearly everyone: default_role
		// user → advanced_user (99% of the users are in no mapped group).
		changed := dir
		changed.DefaultRole = "advanced_user"
		set.Replace([]*directory.Entry{{Config: changed, Client: client}})
		runtime.GC()
		start = time.Now()
		upd, err := s.Sync(ctx, dir.ID, Options{})
		update := time.Since(start)
		set.Replace([]*directory.Entry{{Config: dir, Client: client}})
		if err != nil || upd.Counts[string(ActionUpdate)] < users*9/10 {
			b.Fatalf("update of everyone: %v %+v", err, upd.Counts)
		}
		search4 := ldapsearchTime(b, srv, dir)
		store.Close()
		b.ReportMetric(update.Seconds(), "update_s")
		b.ReportMetric(update.Seconds()/((search3+search4)/2).Seconds(), "update/ldapsearch")

		b.ReportMetric(first.Seconds(), "sync_s")
		b.ReportMetric(search.Seconds(), "ldapsearch_s")
		b.ReportMetric(first.Seconds()/search.Seconds(), "sync/ldapsearch")
		b.ReportMetric(float64(peak)/(1<<20), "peak_rss_MiB")
		b.ReportMetric(float64(anon)/(1<<20), "peak_anon_MiB")
		b.ReportMetric(float64(file)/(1<<20), "peak_file_MiB")
		b.ReportMetric(resync.Seconds(), "resync_s")
		b.ReportMetric(resync.Seconds()/resyncSearch.Seconds(), "resync/ldapsearch")
		b.ReportMetric(float64(written+len(audit)), "resync_users_written")
		if written != 0 || len(audit) != 0 {
			b.Errorf("unchanged re-sync wrote %d users (%d audit entries)", written, len(audit))
		}
	}
}

func writeHeapProfile(b *testing.B, path string) {
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
	// The mappings with their resident sizes: which files the RssFile is.
	if smaps, err := os.ReadFile("/proc/self/smaps"); err == nil {
		os.WriteFile(path+".smaps", smaps, 0o644)
	}
}

// ldapsearchTime runs OpenLDAP's ldapsearch, paged like the syncer, over the
// users and the groups with the attributes the directory client requests.
func ldapsearchTime(b *testing.B, srv *ldaptest.Server, dir config.Directory) time.Duration {
	b.Helper()
	page := "pr=" + strconv.Itoa(dir.PageSize) + "/noprompt"
	start := time.Now()
	for _, q := range [][]string{
		{dir.UsersBase(), "(objectClass=inetOrgPerson)", "uid", "entryUUID", "mail", "cn", "memberOf", "pwdAccountLockedTime"},
		{dir.GroupsBase(), "(objectClass=groupOfNames)", "cn", "member", "uniqueMember", "memberUid", "memberOf", "objectSid"},
	} {
		args := append([]string{"-x", "-LLL", "-H", srv.URL, "-D", srv.AdminDN, "-w", srv.AdminPassword,
			"-E", page, "-b", q[0], q[1]}, q[2:]...)
		cmd := exec.Command("ldapsearch", args...)
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		for sc.Scan() {
		}
		if err := cmd.Wait(); err != nil {
			b.Fatalf("ldapsearch: %v", err)
		}
	}
	return time.Since(start)
}

// resetPeakRSS resets VmHWM (Linux: writing 5 to clear_refs).
func resetPeakRSS(b *testing.B) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Logf("cannot reset peak RSS: %v", err)
	}
}

// sampleRSS tracks the largest RssAnon (heap, stacks) and RssFile (the
// store's memory-mapped files) every 20 ms until the returned func is
// called, to tell which side a peak RSS comes from.
func sampleRSS() func() (anon, file int64) {
	done := make(chan struct{})
	result := make(chan [2]int64)
	go func() {
		var max [2]int64
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			a, f := statusKB("RssAnon:"), statusKB("RssFile:")
			max[0], max[1] = maxI(max[0], a<<10), maxI(max[1], f<<10)
			select {
			case <-done:
				result <- max
				return
			case <-t.C:
			}
		}
	}()
	return func() (int64, int64) {
		close(done)
		m := <-result
		return m[0], m[1]
	}
}

func maxI(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

func statusKB(field string) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb
		}
	}
	return 0
}

// peakRSS reads VmHWM from /proc/self/status, in bytes.
func peakRSS(b *testing.B) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	b.Fatal("no VmHWM")
	return 0
}

// BenchmarkApply100k times the apply phase alone (no slapd): 100k planned
// creates written into an empty store as a first sync writes them, with
// wall and process CPU time (the machine is shared: CPU time varies less
// with the load). LDAPGATE_BENCH_USERS changes the count.
//
//	go test ./syncer -run '^$' -bench Apply100k -benchtime 1x
func BenchmarkApply100k(b *testing.B) {
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("LDAPGATE_BENCH_USERS")); err == nil && v > 0 {
		n = v
	}
	ctx := context.Background()
	for range b.N {
		b.StopTimer()
		store, err := badgerstore.Open(b.TempDir(), nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		s := New(store.Backend(), directory.NewSet(), config.DefaultRoles(), testLogger(b), nil)
		changes := make([]Change, n)
		for i := range changes {
			name := fmt.Sprintf("user%06d", i)
			changes[i] = Change{Action: ActionCreate, Username: name, After: &account.User{
				Username: name, Email: name + "@example.com", DisplayName: "User " + name, Role: "user",
				Groups: []string{fmt.Sprintf("group%03d", i%100)}, State: account.StateActive,
				Source: account.SourceLDAP, DirectoryID: 1, LDAPDN: "uid=" + name + ",ou=people,dc=example,dc=com",
				LDAPUUID: fmt.Sprintf("6f1c2a4e-1d2b-4c3d-9e8f-%012d", i)}}
		}
		run, err := store.CreateRun(ctx, cache.Run{DirectoryID: 1})
		if err != nil {
			b.Fatal(err)
		}
		// As a sync applies its plan: with the token the plan took.
		// LDAPGATE_BENCH_UNTRUSTED=1 measures PutUser's own lookups instead.
		token, err := store.NamesToken(ctx)
		if err != nil {
			b.Fatal(err)
		}
		names := &token
		if os.Getenv("LDAPGATE_BENCH_UNTRUSTED") != "" {
			names = nil
		}
		runtime.GC()
		cpu0 := cpuTime()
		start := time.Now()
		b.StartTimer()
		res, err := s.apply(ctx, run.ID, 1, changes, names)
		b.StopTimer()
		wall := time.Since(start)
		cpu := cpuTime() - cpu0
		if err != nil || res.counts[ActionCreate] != n {
			b.Fatalf("apply: %v %+v", err, res)
		}
		store.Close()
		b.ReportMetric(wall.Seconds(), "apply_s")
		b.ReportMetric(cpu.Seconds(), "apply_cpu_s")
	}
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
