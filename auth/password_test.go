package auth

import "testing"

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
