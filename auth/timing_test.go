package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ldapgate/ldapgate/config"
)

// An unknown name must cost what a wrong password for a real user costs
// (SPEC §5: within 20% at the median), or names can be probed by timing.
// Finding 7: the LDAP path skipped the bind for unknown names (1.1 ms
// against 2.2 ms). The two kinds of try alternate, so both see the same
// machine load, and medians ignore the outliers a loaded machine makes.
func TestUnknownNameCostsAWrongPassword(t *testing.T) {
	e := newEnv(t, nil, func(c *config.Config) {
		c.Login.MaxFailures = 1 << 20
		c.Login.MaxFailuresPerAddress = 1 << 20
		c.Login.MaxFailuresPerUser = 1 << 20
	})
	if e == nil {
		return
	}
	argon, err := HashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if err := SyncLocalUsers(context.Background(), e.store, []config.LocalUser{
		{Username: "root@local", PasswordHash: config.Secret(argon), Role: "admin"},
	}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name           string
		known, unknown func(i int) string
		pairs          int
	}{
		{"directory", func(int) string { return e.fx.Login("bob") },
			func(i int) string { return fmt.Sprintf("%snobody%d@example.com", e.fx.Prefix, i) }, 300},
		{"local", func(int) string { return "root@local" },
			func(i int) string { return fmt.Sprintf("nobody%d@local", i) }, 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			try := func(name string) time.Duration {
				start := time.Now()
				_, err := e.svc.Login(ctx, LoginRequest{Name: name, Password: "wrong-password", ClientIP: ip1})
				d := time.Since(start)
				if !errors.Is(err, ErrBadCredentials) {
					t.Fatalf("login %s: %v", name, err)
				}
				return d
			}
			// Warm up connections and caches on both paths.
			for i := range 5 {
				try(tc.known(i))
				try(tc.unknown(-i - 1))
			}
			known := make([]time.Duration, 0, tc.pairs)
			unknown := make([]time.Duration, 0, tc.pairs)
			for i := range tc.pairs {
				known = append(known, try(tc.known(i)))
				unknown = append(unknown, try(tc.unknown(i)))
			}
			mk, mu := median(known), median(unknown)
			ratio := float64(mu) / float64(mk)
			t.Logf("median wrong password %v, unknown name %v, ratio %.2f", mk, mu, ratio)
			if ratio < 0.8 || ratio > 1.25 {
				t.Fatalf("unknown name median %v vs wrong password %v: ratio %.2f, want 0.8–1.25", mu, mk, ratio)
			}
		})
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
