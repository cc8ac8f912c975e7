// Package pgtest gives each test its own database on the private
// PostgreSQL cluster scripts/test-pg.sh starts (LDAPGATE_TEST_PG_DSN), so
// packages run in parallel on one cluster.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvDSN names the cluster's DSN (a database the test role may create
// databases from).
const EnvDSN = "LDAPGATE_TEST_PG_DSN"

// DSN creates a new database for t and returns its DSN; the database is
// dropped when t ends. Without a cluster t is skipped, or fails under
// LDAPGATE_REQUIRE_REAL_LDAP=1 (CI).
func DSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv(EnvDSN)
	if base == "" {
		if os.Getenv("LDAPGATE_REQUIRE_REAL_LDAP") == "1" {
			t.Fatalf("%s is not set and LDAPGATE_REQUIRE_REAL_LDAP=1 (start one with scripts/test-pg.sh)", EnvDSN)
		}
		t.Skipf("no PostgreSQL: set %s (scripts/test-pg.sh start DIR)", EnvDSN)
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s: %v", EnvDSN, err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "ldapgate_test_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Logf("drop database %s: %v", name, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}
