package api

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/cache/badgerstore"
	"github.com/ldapgate/ldapgate/cache/pgstore"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/internal/pgtest"
)

// TestListUsersStreamed: GET /auth/v4/user over a real socket answers
// chunked (written while the store is read, SPEC §7), and the JSON is the
// listing with size and total, in id order, for the whole list (more users
// than badgerstore.usersByIDs reads one by one) and for filtered pages.
// Both stores answer alike (SPEC §12).
func TestListUsersStreamed(t *testing.T) {
	t.Run("badger", func(t *testing.T) {
		store, err := badgerstore.Open(t.TempDir(), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		testListUsersStreamed(t, store.Backend())
	})
	t.Run("postgres", func(t *testing.T) {
		store, err := pgstore.Open(t.Context(), pgtest.DSN(t), pgstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		testListUsersStreamed(t, store)
	})
}

func testListUsersStreamed(t *testing.T, store cache.Backend) {
	const n, blocked = 3000, 6
	ctx := t.Context()
	for lo := 0; lo < n; lo += 500 {
		err := store.Update(ctx, func(tx cache.Txn) error {
			for i := lo; i < lo+500; i++ {
				u := account.User{Username: fmt.Sprintf("u%04d@local", i), Role: "user", State: account.StateActive,
					Source: account.SourceLocal, Groups: []string{}}
				if i%500 == 1 { // one per 500: 6
					u.State, u.BlockReason = account.StateBlocked, account.ReasonAdmin
				}
				if err := tx.PutUser(&u); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	const token = "list-admin-token-0123456789"
	a := New(Deps{Config: &config.Config{Roles: config.DefaultRoles()}, Store: store, AdminToken: token,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Level: new(slog.LevelVar)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: a.Handler()}
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { srv.Shutdown() })

	type listing struct {
		List  []account.User `json:"list"`
		Size  int            `json:"size"`
		Total int            `json:"total"`
	}
	get := func(query string) listing {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+ln.Addr().String()+"/auth/v4/user?"+query, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %d %q", query, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked" {
			t.Errorf("%s: not streamed: transfer encoding %v, length %d", query, resp.TransferEncoding, resp.ContentLength)
		}
		var l listing
		if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		if l.Size != len(l.List) {
			t.Errorf("%s: size %d, list of %d", query, l.Size, len(l.List))
		}
		for i := 1; i < len(l.List); i++ {
			if l.List[i].ID <= l.List[i-1].ID {
				t.Fatalf("%s: not in id order at %d", query, i)
			}
		}
		return l
	}
	for _, tc := range []struct {
		query       string
		size, total int
		first       string
	}{
		{"", n, n, "u0000@local"},
		{"limit=10&offset=2995", 5, n, "u2995@local"},
		{"state=active&limit=3", 3, n - blocked, "u0000@local"},
		{"state=blocked", blocked, blocked, "u0001@local"},
		{"state=blocked&offset=100", 0, blocked, ""},
		{"role=admin", 0, 0, ""},
	} {
		l := get(tc.query)
		if l.Size != tc.size || l.Total != tc.total {
			t.Errorf("%q: size %d total %d, want %d %d", tc.query, l.Size, l.Total, tc.size, tc.total)
		}
		if tc.first != "" && (len(l.List) == 0 || l.List[0].Username != tc.first) {
			t.Errorf("%q: first user %+v, want %s", tc.query, l.List[:min(1, len(l.List))], tc.first)
		}
		if l.List == nil {
			t.Errorf("%q: list is null, want []", tc.query)
		}
	}
}
