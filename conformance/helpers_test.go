package conformance

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/cache/badgerstore"
	"github.com/ldapgate/ldapgate/cache/pgstore"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/directory"
	"github.com/ldapgate/ldapgate/internal/ldaptest"
	"github.com/ldapgate/ldapgate/internal/pgtest"
	"github.com/ldapgate/ldapgate/syncer"
)

const (
	openldap = ldaptest.OpenLDAP
	samba    = ldaptest.Samba
	ds389    = ldaptest.DS389
)

// flavors is the set of flavours a table row applies to; nil means all.
type flavors []ldaptest.Flavor

func (fs flavors) has(f ldaptest.Flavor) bool { return fs == nil || slices.Contains(fs, f) }

// all marks rows whose expectation is the same on every server.
var all flavors

func only(fs ...ldaptest.Flavor) flavors { return fs }

// testCtx bounds a test's directory I/O: a hung server fails the test, not
// the whole run.
func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// dirConfig is the fixture's directory with the defaults applied and an id,
// as app wiring hands it to directory.Open and the syncer.
func dirConfig(f *ldaptest.Fixture) config.Directory {
	cfg := f.Dir.Clone()
	cfg.ID = 1
	cfg.ApplyDefaults()
	return cfg
}

// openClient opens the production directory client for cfg.
func openClient(t testing.TB, cfg config.Directory) *directory.LDAP {
	t.Helper()
	c, err := directory.Open(cfg, nil, nil)
	if err != nil {
		t.Fatalf("directory.Open(%s): %v", cfg.Name, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// deadURL is an ldap:// URL nothing listens on: a client pointed at it
// proves an operation did no I/O when it fails with anything but
// ErrUnavailable.
func deadURL(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return "ldap://" + addr
}

// syncEnv is a store, a directory set and a syncer wired as app does, for
// one fixture directory.
type syncEnv struct {
	cfg    config.Directory
	client *directory.LDAP
	dirs   *directory.Set
	store  cache.Backend
	syncer *syncer.Syncer
}

func newSyncEnv(t testing.TB, cfg config.Directory) *syncEnv {
	t.Helper()
	store := openStore(t)
	client := openClient(t, cfg)
	dirs := directory.NewSet()
	dirs.Replace([]*directory.Entry{{Config: cfg, Client: client}})
	return &syncEnv{cfg: cfg, client: client, dirs: dirs, store: store,
		syncer: syncer.New(store, dirs, config.DefaultRoles(), nil, nil)}
}

// openStore is badger, or with LDAPGATE_TEST_STORE=postgres a database of
// the test cluster: the conformance table holds on both stores (SPEC §12).
func openStore(t testing.TB) cache.Backend {
	t.Helper()
	if os.Getenv("LDAPGATE_TEST_STORE") == "postgres" {
		s, err := pgstore.Open(context.Background(), pgtest.DSN(t), pgstore.Options{})
		if err != nil {
			t.Fatalf("pgstore.Open: %v", err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	store, err := badgerstore.Open(t.TempDir(), nil, nil)
	if err != nil {
		t.Fatalf("badgerstore.Open: %v", err)
	}
	t.Cleanup(func() { _ = store.Close() })
	return store.Backend()
}

// rawUUID reads the flavour's immutable id of dn straight from the server,
// independently of the directory client: entryUUID on OpenLDAP, ipaUniqueID
// on FreeIPA-shaped 389-ds, objectGUID on AD rendered here in the registry
// form (first three groups little-endian).
func rawUUID(t testing.TB, c *ldap.Conn, fl ldaptest.Flavor, dn string) string {
	t.Helper()
	attr := map[ldaptest.Flavor]string{openldap: "entryUUID", ds389: "ipaUniqueID", samba: "objectGUID"}[fl]
	res, err := c.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		0, 30, false, "(objectClass=*)", []string{attr}, nil))
	if err != nil || len(res.Entries) != 1 {
		t.Fatalf("read %s of %s: %v (%d entries)", attr, dn, err, len(resEntries(res)))
	}
	e := res.Entries[0]
	if fl != samba {
		return e.GetEqualFoldAttributeValue(attr)
	}
	b := e.GetEqualFoldRawAttributeValue(attr)
	if len(b) != 16 {
		t.Fatalf("objectGUID of %s: %d bytes", dn, len(b))
	}
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x", binary.LittleEndian.Uint32(b[0:4]),
		binary.LittleEndian.Uint16(b[4:6]), binary.LittleEndian.Uint16(b[6:8]), b[8:10], b[10:16])
}

func resEntries(r *ldap.SearchResult) []*ldap.Entry {
	if r == nil {
		return nil
	}
	return r.Entries
}

// readAll reads every user and group of a directory through the client.
func readAll(t testing.TB, ctx context.Context, c directory.Client) (map[string]directory.User, []directory.Group) {
	t.Helper()
	users := map[string]directory.User{}
	if err := c.ReadUsers(ctx, func(u directory.User) error {
		if _, dup := users[u.Username]; dup {
			return fmt.Errorf("user %q read twice", u.Username)
		}
		users[u.Username] = u
		return nil
	}); err != nil {
		t.Fatalf("ReadUsers: %v", err)
	}
	var groups []directory.Group
	if err := c.ReadGroups(ctx, func(g directory.Group) error {
		groups = append(groups, g)
		return nil
	}); err != nil {
		t.Fatalf("ReadGroups: %v", err)
	}
	return users, groups
}
