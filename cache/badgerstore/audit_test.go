package badgerstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ldapgate/ldapgate/cache"
)

// TestAuditChunks: entries are stored in chunks of consecutive entries
// (several per key, a new key past the chunk bounds and per transaction),
// read back one by one in seq order, next to entries stored one per key
// by older versions.
func TestAuditChunks(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	run, err := s.CreateRun(ctx, cache.Run{DirectoryID: 1})
	if err != nil {
		t.Fatal(err)
	}
	// An older store's entry: one JSON object under its own seq.
	old := cache.AuditEntry{Seq: 1, At: time.Now().UTC(), Action: "create", Username: "old"}
	oldJSON, _ := json.Marshal(old)
	err = s.Update(ctx, func(tx *Tx) error {
		if err := tx.set(key(pAudit, run.ID, 1), oldJSON); err != nil {
			return err
		}
		return tx.set(key(pAuditSeq, run.ID), idBytes(1))
	})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 1000) // 70 of these fill a chunk by bytes
	sizes := []int{1, auditChunkEntries, auditChunkEntries + 1, 3*auditChunkEntries - 1, 200}
	want := []string{"old"}
	for i, n := range sizes {
		err := s.Update(ctx, func(tx *Tx) error {
			for j := range n {
				name := fmt.Sprintf("t%d-%d", i, j)
				reason := ""
				if i == len(sizes)-1 {
					reason = long
				}
				if err := tx.AddAudit(run.ID, cache.AuditEntry{Action: "update", Username: name, Reason: reason}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for j := range n {
			want = append(want, fmt.Sprintf("t%d-%d", i, j))
		}
	}
	got, err := s.RunChanges(ctx, run.ID)
	if err != nil || len(got) != len(want) {
		t.Fatalf("RunChanges: %d entries, want %d (%v)", len(got), len(want), err)
	}
	for i, e := range got {
		if e.Seq != uint64(i+1) || e.Username != want[i] {
			t.Fatalf("entry %d: seq %d user %s, want seq %d user %s", i, e.Seq, e.Username, i+1, want[i])
		}
	}
	// Fewer keys than entries, and every value within the bound.
	keys, maxLen := 0, 0
	txn := s.db.NewTransaction(false)
	iterate(ctx, txn, key(pAudit, run.ID), func(_, v []byte) error {
		keys++
		maxLen = max(maxLen, len(v))
		return nil
	})
	txn.Discard()
	if keys >= len(want)/100 || maxLen > auditChunkBytes+2000 {
		t.Errorf("%d keys for %d entries, largest value %d bytes", keys, len(want), maxLen)
	}
}
