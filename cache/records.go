package cache

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ldapgate/ldapgate/config"
)

// directoryRecord is how every store keeps an API-created directory.
// config.Secret marshals to "" on purpose (answers must never carry it),
// so the bind password travels in a field of its own.
type directoryRecord struct {
	Directory    config.Directory `json:"directory"`
	BindPassword string           `json:"bind_password"`
}

// EncodeDirectory is d as a store keeps it, bind password included.
func EncodeDirectory(d config.Directory) ([]byte, error) {
	return json.Marshal(directoryRecord{Directory: d, BindPassword: d.BindPassword.Reveal()})
}

// DecodeDirectory reads what EncodeDirectory wrote.
func DecodeDirectory(b []byte) (config.Directory, error) {
	var r directoryRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return config.Directory{}, fmt.Errorf("decode directory: %w", err)
	}
	r.Directory.BindPassword = config.Secret(r.BindPassword)
	return r.Directory, nil
}

// CheckNewSession is what every store refuses to store as a session: one
// already expired (ErrNotFound: it would be gone at once) or of no user.
func CheckNewSession(sess Session) error {
	if !time.Now().Before(sess.ExpiresAt) {
		return fmt.Errorf("already expired: %w", ErrNotFound)
	}
	if sess.UserID == 0 {
		return errors.New("no user")
	}
	return nil
}
