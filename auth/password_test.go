package auth

import (
	"sync"
	"testing"
)

// TestDummyHashParams: the unknown-user path must cost what a real check
// of a fresh hash costs, so the constant dummy hash has HashPassword's
// parameters and verifies like one.
func TestDummyHashParams(t *testing.T) {
	p, err := parseArgon2id(dummyHash)
	if err != nil {
		t.Fatal(err)
	}
	if p.memory != argonMemory || p.time != argonTime || p.threads != argonThreads ||
		len(p.key) != argonKeyLen || len(p.salt) != argonSaltLen {
		t.Fatalf("dummy hash parameters %+v differ from HashPassword's", p)
	}
	if ok, err := VerifyPassword(dummyHash, "ldapgate-dummy-password"); err != nil || !ok {
		t.Fatalf("dummy hash does not verify its password: %v %v", ok, err)
	}
}

// A flood of wrong passwords never runs more password checks at once than
// hashSlots allows: each argon2id run holds its memory (SPEC §11).
func TestPasswordChecksBounded(t *testing.T) {
	hash, err := HashPassword("right")
	if err != nil {
		t.Fatal(err)
	}
	hashingPeak.Store(0)
	var wg sync.WaitGroup
	for range 4 * cap(hashSlots) {
		wg.Go(func() { _, _ = VerifyPassword(hash, "wrong") })
	}
	wg.Wait()
	if peak := hashingPeak.Load(); peak < 1 || int(peak) > cap(hashSlots) {
		t.Fatalf("peak concurrent password checks %d, bound %d", peak, cap(hashSlots))
	}
}
