package badgerstore

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/config"
)

func fullDirectory() config.Directory {
	autoSync := false
	frac := 0.5
	return config.Directory{
		Name: "corp", Type: config.TypeActiveDirectory,
		URLs: []string{"ldaps://dc1.example.com:636", "ldaps://dc2.example.com:636"}, StartTLS: true,
		TLS:    config.TLS{CAFile: "/etc/ca.pem", InsecureSkipVerify: true},
		BaseDN: "dc=example,dc=com", BindDN: "cn=svc,dc=example,dc=com",
		BindPassword:     "s3cr3t-Passw0rd",
		BindPasswordFile: "/run/secrets/x",
		UsersDN:          "ou=users", GroupsDN: "ou=groups", GroupNameAttribute: "memberOf",
		EmailAttribute: "mail", UsernameAttribute: "sAMAccountName", UUIDAttribute: "objectGUID",
		DisplayNameAttribute: "displayName", UserObjectFilter: "(objectClass=user)",
		GroupObjectFilter: "(objectClass=group)", UserFilter: "(department=IT)",
		DisabledFilter: "(x=1)", Domain: "example.com", Naming: config.NamingEmail,
		RoleMapping: map[string][]string{"admin": {"cn=admins,dc=example,dc=com"}},
		DefaultRole: "user", Schedule: "daily 03:00", AutoSync: &autoSync, MaxBlockFraction: &frac,
		Note: "main office", PageSize: 1000, ConnectTimeout: config.Duration(5e9), Timeout: config.Duration(3e10),
		PoolSize: 3, Managed: "api",
	}
}

func TestDirectoryRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir)
	in := fullDirectory()
	saved, err := s.SaveDirectory(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if saved.ID == 0 {
		t.Fatal("no id assigned")
	}
	second, err := s.SaveDirectory(ctx, config.Directory{Name: "second", Type: config.TypeLDAP})
	if err != nil || second.ID <= saved.ID {
		t.Fatalf("second directory: %+v, %v", second, err)
	}
	s.Close()
	s = openTest(t, dir)

	list, err := s.Directories(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("Directories: %d, %v", len(list), err)
	}
	want := in
	want.ID = saved.ID
	if !reflect.DeepEqual(list[0], want) {
		t.Fatalf("round trip:\n got %#v\nwant %#v", list[0], want)
	}
	if list[0].BindPassword.Reveal() != "s3cr3t-Passw0rd" {
		t.Fatal("bind password lost")
	}
	b, err := json.Marshal(list[0])
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "s3cr3t") {
		t.Fatalf("JSON of a stored directory carries the password: %s", b)
	}

	// Replace keeps the id; an unknown id is refused, not created.
	list[0].Note = "moved"
	if _, err := s.SaveDirectory(ctx, list[0]); err != nil {
		t.Fatal(err)
	}
	ghost := fullDirectory()
	ghost.ID = 777
	if _, err := s.SaveDirectory(ctx, ghost); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("save with unknown id: %v", err)
	}
	if err := s.DeleteDirectory(ctx, second.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteDirectory(ctx, second.ID); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	list, _ = s.Directories(ctx)
	if len(list) != 1 || list[0].Note != "moved" || list[0].ID != saved.ID {
		t.Fatalf("after edit and delete: %+v", list)
	}
}

func TestDirectoryIDForName(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir)
	api, err := s.SaveDirectory(ctx, config.Directory{Name: "api-made"})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]uint64{}
	for _, n := range []string{"corp", "lab"} {
		id, err := s.DirectoryIDForName(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if id == 0 || id == api.ID {
			t.Fatalf("id %d for %q clashes (api directory %d)", id, n, api.ID)
		}
		ids[n] = id
	}
	if ids["corp"] == ids["lab"] {
		t.Fatal("two names share an id")
	}
	s.Close()
	s = openTest(t, dir)
	tests := []struct{ name, key string }{{"Corp", "corp"}, {" LAB ", "lab"}, {"corp", "corp"}}
	for _, tc := range tests {
		id, err := s.DirectoryIDForName(ctx, tc.name)
		if err != nil || id != ids[tc.key] {
			t.Errorf("DirectoryIDForName(%q) = %d, %v; want %d", tc.name, id, err, ids[tc.key])
		}
	}
}
