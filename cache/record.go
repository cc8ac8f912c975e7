package cache

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ldapgate/ldapgate/account"
)

// userRecord is how a user is stored. It is private so the stored form can
// carry PasswordHash (which account.User hides from JSON answers) and can
// evolve without touching the API's JSON. Short keys: 100k of these are
// written by a first sync.
type userRecord struct {
	ID           uint64    `json:"i"`
	Username     string    `json:"n"`
	Email        string    `json:"e,omitempty"`
	DisplayName  string    `json:"dn,omitempty"`
	Role         string    `json:"r,omitempty"`
	Groups       []string  `json:"g,omitempty"`
	State        string    `json:"s"`
	BlockReason  string    `json:"br,omitempty"`
	Source       string    `json:"src"`
	DirectoryID  uint64    `json:"d,omitempty"`
	LDAPDN       string    `json:"dn2,omitempty"`
	LDAPUUID     string    `json:"uu,omitempty"`
	PasswordHash string    `json:"ph,omitempty"`
	CreatedAt    time.Time `json:"ca"`
	UpdatedAt    time.Time `json:"ua"`
	LastLoginAt  time.Time `json:"la,omitzero"`
	LastSyncedAt time.Time `json:"ls,omitzero"`
}

func encodeUser(u *account.User) ([]byte, error) {
	b, err := json.Marshal(userRecord{
		ID: u.ID, Username: u.Username, Email: u.Email, DisplayName: u.DisplayName,
		Role: u.Role, Groups: u.Groups, State: string(u.State),
		BlockReason: string(u.BlockReason), Source: string(u.Source),
		DirectoryID: u.DirectoryID, LDAPDN: u.LDAPDN, LDAPUUID: u.LDAPUUID,
		PasswordHash: u.PasswordHash, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt,
		LastLoginAt: u.LastLoginAt, LastSyncedAt: u.LastSyncedAt,
	})
	if err != nil {
		return nil, fmt.Errorf("encode user %d: %w", u.ID, err)
	}
	return b, nil
}

func decodeUser(b []byte) (account.User, error) {
	var r userRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return account.User{}, fmt.Errorf("decode user: %w", err)
	}
	return account.User{
		ID: r.ID, Username: r.Username, Email: r.Email, DisplayName: r.DisplayName,
		Role: r.Role,
		// Clipped so a caller appending to the groups of a (possibly cached)
		// user gets a new array instead of writing into ours.
		Groups: slices.Clip(r.Groups), State: account.State(r.State),
		BlockReason: account.BlockReason(r.BlockReason), Source: account.Source(r.Source),
		DirectoryID: r.DirectoryID, LDAPDN: r.LDAPDN, LDAPUUID: r.LDAPUUID,
		PasswordHash: r.PasswordHash, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
		LastLoginAt: r.LastLoginAt, LastSyncedAt: r.LastSyncedAt,
	}, nil
}

// listValue is the value of a ul/ key: what ListUsers and CountUsers filter
// on, readable without decoding the user.
func listValue(u *account.User) []byte {
	return []byte(string(u.State) + "\x00" + u.Role + "\x00" + string(u.Source))
}

type listEntry struct {
	state, role, source string
}

func parseListValue(b []byte) listEntry {
	state, rest, _ := strings.Cut(string(b), "\x00")
	role, source, _ := strings.Cut(rest, "\x00")
	return listEntry{state, role, source}
}

func (e listEntry) match(f UserFilter) bool {
	return (f.State == "" || e.state == f.State) &&
		(f.Role == "" || e.role == f.Role) &&
		(f.Source == "" || e.source == f.Source)
}
