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
// same checks as Login, without a session. Successes are cached for at
// most a minute; concurrent identical checks share one bind; failures are
// never cached. A cached success still requires the store user to be
// active on every request.
func (s *Service) Basic(ctx context.Context, user, password string, ip netip.Addr) (account.User, error) {
	k := s.basicKeyOf(user, password)
	now := time.Now().UnixNano()
	if e, ok := s.basic.Get(k); ok && now < e.expires {
		s.basicHit.Inc()
		u, err := s.store.UserByID(ctx, e.userID)
		switch {
		case err == nil && u.Active():
			return u, nil
		case err == nil, errors.Is(err, cache.ErrNotFound):
			s.basic.Remove(k)
			return account.User{}, ErrForbidden
		default:
			return account.User{}, err
		}
	}
	s.basicMiss.Inc()
	v, err, _ := s.basicGroup.Do(string(k[:]), func() (any, error) {
		res, err := s.login(context.WithoutCancel(ctx), LoginRequest{Name: user, Password: password, ClientIP: ip}, false)
		if err != nil {
			return nil, err
		}
		s.basic.Add(k, &basicEntry{userID: res.User.ID, expires: time.Now().Add(basicTTL).UnixNano()})
		return res.User, nil
	})
	if err != nil {
		return account.User{}, err
	}
	return v.(account.User), nil //nolint:forcetypeassert // the group returns only account.User
}
