package web

import (
	"context"
	"sync"
	"testing"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
)

type reqCtxMarker struct{}

// ctxSpy records the store calls auth makes whose context does not come
// from Deps.Context.
type ctxSpy struct {
	cache.Backend
	mu        sync.Mutex
	calls     int
	foreignBy []string
}

func (c *ctxSpy) saw(ctx context.Context, method string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if ctx.Value(reqCtxMarker{}) == nil {
		c.foreignBy = append(c.foreignBy, method)
	}
}

func (c *ctxSpy) UserByID(ctx context.Context, id uint64) (account.User, error) {
	c.saw(ctx, "UserByID")
	return c.Backend.UserByID(ctx, id)
}

func (c *ctxSpy) UserByName(ctx context.Context, name string) (account.User, error) {
	c.saw(ctx, "UserByName")
	return c.Backend.UserByName(ctx, name)
}

func (c *ctxSpy) CreateSession(ctx context.Context, sess cache.Session, max int, check func(account.User) error) ([][32]byte, error) {
	c.saw(ctx, "CreateSession")
	return c.Backend.CreateSession(ctx, sess, max, check)
}

func (c *ctxSpy) SessionByHash(ctx context.Context, h [32]byte) (cache.Session, error) {
	c.saw(ctx, "SessionByHash")
	return c.Backend.SessionByHash(ctx, h)
}

func (c *ctxSpy) DeleteSession(ctx context.Context, h [32]byte) error {
	c.saw(ctx, "DeleteSession")
	return c.Backend.DeleteSession(ctx, h)
}

// TestStoreCallsNeverGetTheRequestCtx: a request's store calls run under
// Deps.Context, never under the *fasthttp.RequestCtx. fasthttp recycles
// that once the handler returns, and pgx watches a call's context from a
// goroutine of its own: with the request ctx, CI's race detector caught
// that goroutine reading a recycled request (TestSessionEnds on the
// PostgreSQL store).
func TestStoreCallsNeverGetTheRequestCtx(t *testing.T) {
	spy := &ctxSpy{}
	s := newStack(t, stackOpts{
		ctx:       context.WithValue(context.Background(), reqCtxMarker{}, true),
		wrapStore: func(b cache.Backend) cache.Backend { spy.Backend = b; return spy },
	})
	if s == nil {
		return
	}
	tok := s.login(t, "alice") // the token endpoint
	if r := s.do(t, "GET", "/app", "", s.cookie(tok)); r.status != 200 {
		t.Fatalf("session check: %d", r.status)
	}
	if r := s.do(t, "GET", "/app", "", basic(s.fx.Login("bob"), "wrong")); r.status != 401 {
		t.Fatalf("basic with a wrong password: %d", r.status)
	}
	if r := s.do(t, "POST", "/auth/v4/logout", "", "Authorization: Bearer "+tok); r.status != 200 {
		t.Fatalf("logout: %d", r.status)
	}
	spy.mu.Lock()
	defer spy.mu.Unlock()
	if spy.calls == 0 {
		t.Fatal("auth made no store call through the spy")
	}
	if len(spy.foreignBy) > 0 {
		t.Errorf("store calls under a context not from Deps.Context: %v", spy.foreignBy)
	}
}
