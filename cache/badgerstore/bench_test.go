package badgerstore

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
)

func benchUser(i int) account.User {
	u := ldapUser(fmt.Sprintf("user%06d@example.com", i), 1, fmt.Sprintf("6f1c2a4e-1d2b-4c3d-9e8f-%012d", i), "user")
	u.DisplayName = fmt.Sprintf("User Number %d", i)
	u.Groups = []string{"staff", fmt.Sprintf("group%03d", i%100)}
	u.LastSyncedAt = time.Now()
	if i%10 == 0 {
		u.State = account.StateBlocked
		u.BlockReason = account.ReasonDeletedInLDAP
	}
	return u
}

func BenchmarkEncodeUser(b *testing.B) {
	u := benchUser(42)
	u.ID, u.CreatedAt, u.UpdatedAt = 42, time.Now(), time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := encodeUser(&u); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeUser(b *testing.B) {
	u := benchUser(42)
	u.ID, u.CreatedAt, u.UpdatedAt = 42, time.Now(), time.Now()
	enc, _ := encodeUser(&u)
	b.ReportAllocs()
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		if _, err := decodeUser(enc); err != nil {
			b.Fatal(err)
		}
	}
}

// putBatched writes n users in transactions of batch users, as the syncer
// applies a first sync.
func putBatched(tb testing.TB, s *Store, n, batch int) {
	ctx := context.Background()
	for lo := 0; lo < n; lo += batch {
		err := s.Update(ctx, func(tx *Tx) error {
			for i := lo; i < min(lo+batch, n); i++ {
				u := benchUser(i)
				if err := tx.PutUser(&u); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatalf("batch at %d: %v", lo, err)
		}
	}
}

// BenchmarkStore100k measures the operations a 100k-user sync and the
// admin API do on a full store, and the process's peak RSS (VmHWM):
//
//	go test -run '^$' -bench Store100k -benchtime 1x ./cache
func BenchmarkStore100k(b *testing.B) {
	const n = 100_000
	ctx := context.Background()
	for b.Loop() {
		s := openTest(b, "")
		start := time.Now()
		putBatched(b, s, n, 1000)
		b.ReportMetric(time.Since(start).Seconds(), "s-write100k")
		b.ReportMetric(float64(vmKB("VmHWM"))/1024, "MiB-peak-rss-after-write")

		start = time.Now()
		count := 0
		if err := s.ForEachUser(ctx, func(account.User) error { count++; return nil }); err != nil || count != n {
			b.Fatalf("ForEachUser: %d, %v", count, err)
		}
		b.ReportMetric(time.Since(start).Seconds(), "s-foreach100k")

		start = time.Now()
		if us, err := s.UsersOfDirectory(ctx, 1); err != nil || len(us) != n {
			b.Fatalf("UsersOfDirectory: %d, %v", len(us), err)
		}
		b.ReportMetric(time.Since(start).Seconds(), "s-usersofdir100k")

		start = time.Now()
		page, total, err := s.ListUsers(ctx, cache.UserFilter{State: "blocked", Limit: 100, Offset: 5000})
		if err != nil || total != n/10 || len(page) != 100 {
			b.Fatalf("ListUsers: %d of %d, %v", len(page), total, err)
		}
		b.ReportMetric(float64(time.Since(start).Microseconds())/1000, "ms-list-filtered")

		start = time.Now()
		if _, err := s.CountUsers(ctx); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(time.Since(start).Microseconds())/1000, "ms-count")

		// Every user looked up by uuid, as a re-sync matches users.
		start = time.Now()
		err = s.db.View(func(txn *badger.Txn) error {
			for i := 0; i < n; i++ {
				if _, err := txUserByIndex(txn, userUUIDKey(1, fmt.Sprintf("6f1c2a4e-1d2b-4c3d-9e8f-%012d", i)), "x"); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(start).Seconds(), "s-uuid-lookups100k")
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(ms.HeapSys)/(1<<20), "MiB-heap-sys")
		b.ReportMetric(float64(vmKB("VmHWM"))/1024, "MiB-peak-rss")
	}
}

// vmKB reads a kB field of /proc/self/status (0 where there is none).
func vmKB(field string) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}

func TestUserCodecRoundTrip(t *testing.T) {
	full := benchUser(7)
	full.ID, full.PasswordHash = 1<<40+3, "$argon2id$x"
	full.CreatedAt = time.Date(2024, 2, 29, 23, 59, 59, 999999999, time.UTC)
	full.UpdatedAt = time.Unix(-5, 3).UTC() // before 1970: negative varint
	full.LastLoginAt = time.Unix(1<<33, 0).UTC()
	full.LastSyncedAt = time.Now().UTC()
	full.DisplayName = "Zoë \\x00 ünïcode"
	full.State, full.LDAPStatus = account.StateBlockedInLDAP, account.LDAPStatusExpired
	tests := []struct {
		name string
		u    account.User
	}{
		{"full", full},
		{"zero", account.User{}},
		{"local", localUser("root@local", "admin")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := encodeUser(&tc.u)
			if err != nil {
				t.Fatal(err)
			}
			got, err := decodeUser(b)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", tc.u) {
				t.Fatalf("round trip:\n got %#v\nwant %#v", got, tc.u)
			}
			for i := 0; i < len(b); i++ {
				if _, err := decodeUser(b[:i]); err == nil {
					t.Fatalf("truncated record (%d of %d bytes) decoded", i, len(b))
				}
			}
		})
	}
}
