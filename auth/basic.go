package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"net/netip"
	"time"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
)

type basicEntry struct {
	userID  uint64
	expires int64 // unix ns
	// cred is credStamp of the user the credentials were checked against.
	cred uint64
}

// basicKeyOf keys the Basic-auth cache: HMAC-SHA256 under a per-process
// random key of user‖0x00‖password. The password itself is never kept,
// and a dump of the cache cannot be checked against guesses offline.
func (s *Service) basicKeyOf(user, password string) [32]byte {
	mac := hmac.New(sha256.New, s.basicKey)
	mac.Write([]byte(user))
	mac.Write([]byte{0})
	mac.Write([]byte(password))
	var k [32]byte
	mac.Sum(k[:0])
	return k
}

// Basic checks "Authorization: Basic" credentials of an API client: the
// same checks and limits as Login, without a session. Successes are cached
// for at most a minute; concurrent identical checks from one address share
// one bind; failures are never cached. A cached success still requires the
// store user to be active, and their password to be the one it was made
// with, on every request: a password change drops it at once.
func (s *Service) Basic(ctx context.Context, user, password string, ip netip.Addr) (account.User, error) {
	k := s.basicKeyOf(user, password)
	now := time.Now().UnixNano()
	if e, ok := s.basic.Get(k); ok && now < e.expires {
		u, err := s.store.UserByID(ctx, e.userID)
		switch {
		case err == nil && u.Active() && s.credStamp(&u) == e.cred:
			s.basicHit.Inc()
			return u, nil
		case err == nil && u.Active():
			// The password changed: check these credentials afresh.
			s.basic.Remove(k)
		case err == nil, errors.Is(err, cache.ErrNotFound):
			s.basicHit.Inc()
			s.basic.Remove(k)
			return account.User{}, ErrForbidden
		default:
			return account.User{}, err
		}
	}
	s.basicMiss.Inc()
	// Limits and the slow-down apply in the caller's goroutine, with its
	// context, before any sharing: every request pays its own way.
	a, err := s.admit(ctx, LoginRequest{Name: user, Password: password, ClientIP: ip})
	if err != nil {
		return account.User{}, err
	}
	// Shared only within one address's counting unit, so each failure is
	// counted against the address that sent it.
	ak := addrKey(ip).As16()
	v, err, _ := s.basicGroup.Do(string(k[:])+string(ak[:]), func() (any, error) {
		res, err := s.check(context.WithoutCancel(ctx), a, false)
		if err != nil {
			return nil, err
		}
		s.basic.Add(k, &basicEntry{userID: res.User.ID, expires: time.Now().Add(basicTTL).UnixNano(),
			cred: s.credStamp(&res.User)})
		return res.User, nil
	})
	if err != nil {
		return account.User{}, err
	}
	return v.(account.User), nil //nolint:forcetypeassert // the group returns only account.User
}
