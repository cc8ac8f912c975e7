package syncer

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/cache/badgerstore"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/directory"
	"github.com/ldapgate/ldapgate/internal/ldaptest"
)

// The crash test re-executes the test binary as a child that syncs into a
// store and gets SIGKILLed mid-apply. These variables carry its settings.
const (
	crashHelperEnv = "LDAPGATE_SYNCER_CRASH_HELPER" // store directory
	crashURLEnv    = "LDAPGATE_SYNCER_CRASH_URL"
	crashBaseEnv   = "LDAPGATE_SYNCER_CRASH_BASE"
	crashBindEnv   = "LDAPGATE_SYNCER_CRASH_BIND"
	crashPassEnv   = "LDAPGATE_SYNCER_CRASH_PASS"
	crashBatch     = 50
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashHelperEnv); dir != "" {
		os.Exit(crashHelper(dir))
	}
	os.Exit(m.Run())
}

// bulkDir is the bulk directory of a server given by its parts.
func bulkDir(url, base, bind, pass string) config.Directory {
	d := ldaptest.BulkDirectory(&ldaptest.Server{URL: url, BaseDN: base, AdminDN: bind, AdminPassword: pass})
	d.ID = 1
	// Roles and states worth comparing: bulkgrp001 members are admins.
	d.RoleMapping = map[string][]string{
		"user":  {ldaptest.BulkGroupDN(&ldaptest.Server{BaseDN: base}, 0)},
		"admin": {ldaptest.BulkGroupDN(&ldaptest.Server{BaseDN: base}, 1)},
	}
	d.ApplyDefaults()
	return d
}

func openSyncer(storeDir string, dir config.Directory) (*Syncer, *badgerstore.Store, func(), error) {
	store, err := badgerstore.Open(storeDir, nil, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	c, err := directory.Open(dir, nil, nil)
	if err != nil {
		store.Close()
		return nil, nil, nil, err
	}
	set := directory.NewSet()
	set.Replace([]*directory.Entry{{Config: dir, Client: c}})
	s := New(store.Backend(), set, config.DefaultRoles(), nil, nil)
	return s, store, func() { c.Close(); store.Close() }, nil
}

// crashHelper is the child: sync with small batches, announcing each
// committed batch and pausing a little so the parent can kill it mid-apply.
func crashHelper(storeDir string) int {
	dir := bulkDir(os.Getenv(crashURLEnv), os.Getenv(crashBaseEnv), os.Getenv(crashBindEnv), os.Getenv(crashPassEnv))
	s, _, closeAll, err := openSyncer(storeDir, dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer closeAll()
	s.batch = crashBatch
	testHookAfterBatch = func(n int) {
		fmt.Printf("applied %d\n", n)
		time.Sleep(2 * time.Millisecond)
	}
	if _, err := s.Sync(context.Background(), dir.ID, Options{Trigger: "crash-test"}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	fmt.Println("finished")
	return 0
}

// comparable content of a store, without ids and times (which legitimately
// differ between two stores).
func content(t *testing.T, s *badgerstore.Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	if err := s.ForEachUser(context.Background(), func(u account.User) error {
		out[u.Username] = fmt.Sprintf("%s|%s|%s|%s|%v|%s|%s|%s", u.Role, u.State, u.BlockReason, u.Source,
			u.Groups, u.Email, u.LDAPDN, u.LDAPUUID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCrashMidApply: a sync killed with SIGKILL mid-apply leaves whole
// batches only (users and their audit entries together); after reopening
// the store, a new sync reaches exactly the state of an uninterrupted sync.
func TestCrashMidApply(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: loads a few thousand users")
	}
	const users = 3000
	srv := ldaptest.StartSlapdWith(t, ldaptest.SlapdOptions{BulkUsers: users, BulkGroups: 10})
	dir := bulkDir(srv.URL, srv.BaseDN, srv.AdminDN, srv.AdminPassword)
	// Some users disabled would need ldapmodify on bulk entries; the bulk
	// loader has none, so the states compared are active ones plus roles.

	crashStore := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashHelperEnv+"="+crashStore, crashURLEnv+"="+srv.URL,
		crashBaseEnv+"="+srv.BaseDN, crashBindEnv+"="+srv.AdminDN, crashPassEnv+"="+srv.AdminPassword)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killedAt := 0
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if n, ok := strings.CutPrefix(sc.Text(), "applied "); ok {
			if v, _ := strconv.Atoi(n); v >= users/3 {
				killedAt = v
				cmd.Process.Kill() // SIGKILL: no deferred close, no flush
				break
			}
		}
	}
	cmd.Wait()
	if killedAt == 0 {
		t.Fatalf("child ended before it could be killed mid-apply; stderr:\n%s", stderr.String())
	}

	s, store, closeAll, err := openSyncer(crashStore, dir)
	if err != nil {
		t.Fatalf("reopen after kill -9: %v", err)
	}
	defer closeAll()
	ctx := context.Background()
	partial := content(t, store)
	if len(partial) < killedAt || len(partial) >= users || len(partial)%crashBatch != 0 {
		t.Errorf("after the kill the store holds %d users (killed after %d): want whole batches of %d, fewer than %d",
			len(partial), killedAt, crashBatch, users)
	}
	runs, err := store.Runs(ctx, dir.ID, 0)
	if err != nil || len(runs) != 1 || runs[0].Result != cache.RunRunning {
		t.Fatalf("runs after the kill: %+v %v", runs, err)
	}
	audit, err := store.RunChanges(ctx, runs[0].ID)
	if err != nil || len(audit) != len(partial) {
		t.Errorf("audit entries %d, users %d: audit and data must agree (%v)", len(audit), len(partial), err)
	}
	s.RecoverRuns(ctx)
	if r, _ := store.Run(ctx, runs[0].ID); r.Result != cache.RunFailed {
		t.Errorf("interrupted run not closed: %+v", r)
	}

	// Finish: the remaining users are created, nobody twice.
	run, err := s.Sync(ctx, dir.ID, Options{})
	if err != nil || run.Counts["create"] != users-len(partial) || run.Counts["unchanged"] != len(partial) {
		t.Errorf("re-sync after the crash: %+v %v", run, err)
	}
	recovered := content(t, store)

	// The reference: one uninterrupted sync into another store.
	ref, refStore, closeRef, err := openSyncer(t.TempDir(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer closeRef()
	if _, err := ref.Sync(ctx, dir.ID, Options{}); err != nil {
		t.Fatal(err)
	}
	want := content(t, refStore)
	if len(want) != users || !maps.Equal(recovered, want) {
		t.Errorf("recovered store differs from an uninterrupted sync: %d vs %d users", len(recovered), len(want))
		n := 0
		for k, v := range want {
			if recovered[k] != v && n < 5 {
				t.Errorf("  %s: %q vs %q", k, recovered[k], v)
				n++
			}
		}
	}
}
