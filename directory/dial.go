package directory

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/config"
)

// tlsBase is the TLS config shared by every server of a directory; ServerName
// is set per URL at dial time.
func tlsBase(cfg config.TLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file %s: no PEM certificate in it", cfg.CAFile)
		}
		// Only this CA: a directory's private CA must not widen to the
		// system roots, nor the system roots vouch for it.
		tc.RootCAs = pool
	}
	// #nosec G402 -- only when the operator wrote insecure_skip_verify: true.
	tc.InsecureSkipVerify = cfg.InsecureSkipVerify
	return tc, nil
}

func (l *LDAP) tlsFor(u *url.URL) *tls.Config {
	tc := l.tls.Clone()
	// Verify against the host the operator wrote, IP or name, never a name
	// the server or DNS offers later.
	tc.ServerName = u.Hostname()
	return tc
}

// dial connects to the first server of the list that answers (and, when
// serviceBind, accepts the service account), in config order. An unreachable
// server costs at most connect_timeout before the next one is tried.
func (l *LDAP) dial(ctx context.Context, op string, serviceBind bool) (*conn, error) {
	var errs []error
	for _, u := range l.s.urls {
		if err := ctx.Err(); err != nil {
			return nil, classify(ctx, op, u.String(), err)
		}
		c, err := l.dialOne(ctx, op, u, serviceBind)
		if err == nil {
			if len(errs) > 0 {
				l.log.Warn("ldap failover: earlier servers failed",
					"directory", l.s.name, "url", c.url, "errors", errors.Join(errs...).Error())
			}
			return c, nil
		}
		l.log.Debug("ldap server failed", "directory", l.s.name, "url", u.String(), "error", err.Error())
		errs = append(errs, err)
	}
	last := errs[len(errs)-1]
	if len(errs) == 1 {
		return nil, last
	}
	// Keep the class and kind of the last failure (what the operator most
	// likely needs to fix), with every server's reason in the message.
	var re *ReadError
	if errors.As(last, &re) {
		return nil, &ReadError{Op: op, Code: re.Code, Kind: re.Kind, Class: re.Class,
			Err: fmt.Errorf("all %d servers failed: %w", len(errs), errors.Join(errs...))}
	}
	return nil, last
}

func (l *LDAP) dialOne(ctx context.Context, op string, u *url.URL, serviceBind bool) (*conn, error) {
	where := u.String()
	dctx, cancel := context.WithTimeout(ctx, l.s.connectTimeout)
	defer cancel()

	host, port := u.Hostname(), u.Port()
	isTLS := u.Scheme == "ldaps"
	if port == "" {
		port = ldap.DefaultLdapPort
		if isTLS {
			port = ldap.DefaultLdapsPort
		}
	}
	// A net.Dialer with connect_timeout, driven by the context so a
	// cancelled login or sync does not wait for it.
	d := net.Dialer{Timeout: l.s.connectTimeout}
	raw, err := d.DialContext(dctx, "tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, classify(ctx, "dial", where, err)
	}
	if isTLS {
		tc := tls.Client(raw, l.tlsFor(u))
		if err := tc.HandshakeContext(dctx); err != nil {
			_ = raw.Close()
			return nil, tlsKind(classify(ctx, "dial", where, err))
		}
		raw = tc
	}
	c := newConn(raw, where, l.s.timeout)

	fail := func(stage string, err error) (*conn, error) {
		_ = c.Close()
		if stage == "bind" && ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
			return nil, &ReadError{Op: op, URL: where, Code: ldap.LDAPResultInvalidCredentials,
				Kind: KindBindRefused, Class: ErrUnavailable,
				Err: fmt.Errorf("service account %q refused", l.s.bindDN)}
		}
		return nil, classify(ctx, stage, where, err)
	}
	if l.s.startTLS && !isTLS {
		// StartTLS is part of connecting: bounded by connect_timeout, and
		// closing the connection ends a stuck handshake.
		stop := context.AfterFunc(dctx, func() { _ = c.Close() })
		err := c.StartTLS(dctx, l.tlsFor(u))
		stop()
		if err != nil {
			if dctx.Err() != nil && ctx.Err() == nil {
				err = fmt.Errorf("starttls: %w", dctx.Err())
			}
			c, err := fail("starttls", err)
			return c, tlsKind(err)
		}
	}
	if serviceBind && l.s.bindDN != "" {
		stop := context.AfterFunc(ctx, func() { _ = c.Close() })
		err := c.SimpleBind(l.s.bindDN, l.s.bindPassword.Reveal())
		stop()
		if err != nil {
			return fail("bind", err)
		}
	}
	return c, nil
}

// tlsKind marks a failed handshake as a TLS problem (wrong CA, wrong name,
// not TLS at all on that port) unless it was a timeout or cancellation:
// go-ldap's StartTLS flattens the x509 error into a string, and a plain
// port answering an ldaps:// hello just hangs up.
func tlsKind(err error) error {
	var re *ReadError
	if errors.As(err, &re) && re.Kind != KindTimeout && re.Kind != KindCanceled {
		re.Kind = KindTLS
	}
	return err
}
