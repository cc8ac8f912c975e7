package syncer

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache/badgerstore"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/directory"
	"github.com/ldapgate/ldapgate/internal/ldaptest"
	"github.com/ldapgate/ldapgate/metrics"
)

// The measurements behind BENCHMARKS.md's "Live changes" section. Timing
// on a shared machine: run by hand, never in the suite.
func liveBench(t *testing.T) {
	if os.Getenv("LDAPGATE_LIVE_BENCH") != "1" {
		t.Skip("set LDAPGATE_LIVE_BENCH=1 to measure")
	}
}

// TestLiveLatencyBench: time from a disable in the directory (the modify
// sent) to the user blocked in the store (their sessions end in the same
// transaction), 50 times per server.
func TestLiveLatencyBench(t *testing.T) {
	liveBench(t)
	ldaptest.Each(t, func(t *testing.T, srv *ldaptest.Server) {
		e := startLive(t, srv, 1)
		ctx := context.Background()
		state := func() account.State {
			u, err := e.store.UserByName(ctx, e.fx.Login("bob"))
			if err != nil {
				t.Fatal(err)
			}
			return u.State
		}
		var ds []time.Duration
		for range 50 {
			t0 := time.Now()
			e.fx.SetDisabled(t, "bob", true)
			for state() != account.StateBlockedInLDAP {
				if time.Since(t0) > time.Minute {
					t.Fatal("not blocked within a minute")
				}
				time.Sleep(2 * time.Millisecond)
			}
			ds = append(ds, time.Since(t0))
			e.fx.SetDisabled(t, "bob", false)
			e.expect("bob", "user", account.StateActive, "")
			// 50 blocks an hour would spend the rolling-hour budget.
			e.s.liveMu.Lock()
			st := e.s.streams[testDirID]
			e.s.liveMu.Unlock()
			st.mu.Lock()
			st.blocks = nil
			st.mu.Unlock()
		}
		slices.Sort(ds)
		t.Logf("BENCH %s: disable → blocked over %d: median %v, p99 %v, max %v", srv.Flavor, len(ds),
			ds[len(ds)/2].Round(time.Millisecond), ds[len(ds)*99/100].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
	})
}

// TestLiveThroughputBench: 10,000 users renamed (cn, their display name)
// in one go on slapd, absorbed by the live stream, then the same kind of
// change applied by one full sync.
func TestLiveThroughputBench(t *testing.T) {
	liveBench(t)
	const n = 10_000
	srv := ldaptest.StartSlapdWith(t, ldaptest.SlapdOptions{BulkUsers: n})
	dir := ldaptest.BulkDirectory(srv)
	dir.ID = testDirID
	dir.ApplyDefaults()
	client, err := directory.Open(dir, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	set := directory.NewSet()
	set.Replace([]*directory.Entry{{Config: dir, Client: client}})
	store, err := badgerstore.Open(t.TempDir(), testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	m := metrics.New()
	s := New(store.Backend(), set, config.DefaultRoles(), testLogger(t), m)
	ctx := context.Background()
	if _, err := s.Sync(ctx, testDirID, Options{}); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(rctx) }()
	deadline := time.Now().Add(time.Minute)
	for st := s.LiveStatus(testDirID).State; st != directory.LiveStreaming; st = s.LiveStatus(testDirID).State {
		if time.Now().After(deadline) {
			t.Fatal("stream not up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c := srv.AdminConn(t)
	rename := func(tag string) time.Duration {
		t0 := time.Now()
		for i := range n {
			req := ldap.NewModifyRequest(fmt.Sprintf("uid=%s,ou=bulk,%s", ldaptest.BulkUserLogin(i), srv.BaseDN), nil)
			req.Replace("cn", []string{fmt.Sprintf("Bulk %s %d", tag, i)})
			if err := c.Modify(req); err != nil {
				t.Fatal(err)
			}
		}
		return time.Since(t0)
	}
	updates := func() float64 { return metricValue(m.LiveEvents.WithLabelValues(dir.Name, string(ActionUpdate))) }
	t0 := time.Now()
	mod := rename("live")
	for updates() < n {
		if time.Since(t0) > 10*time.Minute {
			t.Fatalf("live: %v of %d updates after 10 min", updates(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	live := time.Since(t0)
	t.Logf("BENCH live: %d changes (modifies sent in %v) applied %v after the first was sent: %.0f changes/s",
		n, mod.Round(time.Millisecond), live.Round(time.Millisecond), n/live.Seconds())
	cancel()
	<-done
	mod = rename("full")
	t1 := time.Now()
	run, err := s.Sync(ctx, testDirID, Options{})
	if err != nil || run.Counts[string(ActionUpdate)] != n {
		t.Fatalf("full sync: %v %v", run.Counts, err)
	}
	full := time.Since(t1)
	t.Logf("BENCH full sync: %d changes (modifies sent in %v) applied in %v: %.0f changes/s",
		n, mod.Round(time.Millisecond), full.Round(time.Millisecond), n/full.Seconds())
}
