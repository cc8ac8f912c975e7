package auth

import (
	"context"
	"testing"
)

// BenchmarkSessionCheck is the hot path of every proxied request on a
// cache hit (issue 4, benchmark b): token shape check, SHA-256, the
// session LRU, the user LRU and the state check. Target: 0 allocs/op.
//
//	go test -run '^$' -bench SessionCheck -benchmem ./auth
func BenchmarkSessionCheck(b *testing.B) {
	e := newEnv(b, nil, nil)
	if e == nil {
		return
	}
	tok := []byte(login(b, e, "alice").Token)
	ctx := context.Background()
	if _, err := e.svc.CheckSession(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.svc.CheckSession(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestSessionCheckDoesNotAllocate(t *testing.T) {
	e := newEnv(t, nil, nil)
	if e == nil {
		return
	}
	tok := []byte(login(t, e, "alice").Token)
	ctx := context.Background()
	if _, err := e.svc.CheckSession(ctx, tok); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := e.svc.CheckSession(ctx, tok); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per session check on a cache hit, want 0", allocs)
	}
}
