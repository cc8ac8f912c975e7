package cache

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestEncodeAuditMatchesJSON: the hand-written encoder must give exactly
// what json.Marshal gives, so stored entries keep one format.
func TestEncodeAuditMatchesJSON(t *testing.T) {
	at := time.Date(2025, 3, 4, 5, 6, 7, 890_000_000, time.UTC)
	tests := []struct {
		name string
		e    AuditEntry
	}{
		{"zero", AuditEntry{}},
		{"create", AuditEntry{Seq: 1, At: at, Action: "create", UserID: 42, Username: "alice",
			Fields: map[string][2]string{"role": {"", "admin"}, "state": {"", "active"}}}},
		{"reason, no fields", AuditEntry{Seq: 1 << 60, At: at, Action: "block", UserID: 7, Username: "bob", Reason: "deleted_in_ldap"}},
		{"empty fields map", AuditEntry{Seq: 3, At: at, Action: "update", Fields: map[string][2]string{}}},
		{"escapes", AuditEntry{Seq: 9, At: at.In(time.FixedZone("x", 3600)), Action: "update",
			Username: "a\"b\\c\n\r\t\b\f\x00\x1f<>&\u2028\u2029é日本\xff\xc3",
			Reason:   "</script>",
			Fields:   map[string][2]string{"z": {"\x7f", "ok"}, "a\u00e9": {"", "\xed\xa0\x80"}, "m": {"<", ">"}}}},
		{"nanoseconds", AuditEntry{At: time.Date(2025, 1, 1, 0, 0, 0, 1, time.UTC)}},
		{"planned", AuditEntry{Seq: 2, At: at, Action: "block", UserID: 7, Username: "bob", Reason: "deleted_in_ldap",
			Fields: map[string][2]string{"state": {"active", "blocked"}}, Planned: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkAuditEncoding(t, tc.e)
		})
	}

	// Random strings over the characters that need care.
	alphabet := []string{"a", "Z", "\"", "\\", "<", ">", "&", "\n", "\x01", "\x7f", "é", "\u2028", "\u2029", "\xff", "\xe2\x80", "😀", " "}
	rnd := rand.New(rand.NewPCG(1, 2))
	str := func() string {
		var sb strings.Builder
		for range rnd.IntN(12) {
			sb.WriteString(alphabet[rnd.IntN(len(alphabet))])
		}
		return sb.String()
	}
	for range 2000 {
		checkAuditEncoding(t, AuditEntry{Seq: rnd.Uint64(), At: at.Add(time.Duration(rnd.Int64())), Action: str(),
			UserID: rnd.Uint64(), Username: str(), Reason: str(), Fields: map[string][2]string{str(): {str(), str()}, str(): {str(), str()}}})
	}
}

func checkAuditEncoding(t *testing.T, e AuditEntry) {
	t.Helper()
	want, wantErr := json.Marshal(e)
	got, err := AppendAudit(nil, &e)
	if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
		t.Fatalf("AppendAudit(%+v)\n got %s, %v\nwant %s, %v", e, got, err, want, wantErr)
	}
}

func TestEncodeAuditRejectsYearOutOfRange(t *testing.T) {
	if _, err := AppendAudit(nil, &AuditEntry{At: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}); err == nil {
		t.Fatal("year 10000 encoded; json.Marshal refuses it")
	}
}

func BenchmarkEncodeAudit(b *testing.B) {
	e := AuditEntry{Seq: 12345, At: time.Now().UTC(), Action: "create", UserID: 12345, Username: "user012345@example.com",
		Fields: map[string][2]string{"role": {"", "user"}, "state": {"", "active"}}}
	b.Run("hand", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf, _ = AppendAudit(buf[:0], &e)
		}
	})
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			json.Marshal(e)
		}
	})
}
