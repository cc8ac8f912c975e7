package directory

import (
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/ldapgate/ldapgate/config"
)

// Entry is one live directory: its resolved config (defaults applied, id
// assigned) and its client.
type Entry struct {
	Config config.Directory
	Client Client
}

// Set is the current collection of directories (from the file and from the
// admin API). Readers never lock: a change swaps in a new immutable list, so
// a login racing a SIGHUP reload sees either the old or the new set.
type Set struct {
	list atomic.Pointer[[]*Entry]
}

// NewSet returns an empty set.
func NewSet() *Set {
	s := &Set{}
	s.list.Store(&[]*Entry{})
	return s
}

// List returns the directories in id order. Callers must not modify it.
func (s *Set) List() []*Entry { return *s.list.Load() }

// Replace installs a new list and returns the old one (whose clients the
// caller closes when they are no longer used by anyone else).
func (s *Set) Replace(entries []*Entry) []*Entry {
	return *s.list.Swap(&entries)
}

// ByID finds a directory by id.
func (s *Set) ByID(id uint64) (*Entry, bool) {
	for _, e := range s.List() {
		if e.Config.ID == id {
			return e, true
		}
	}
	return nil, false
}

// ByName finds a directory by name (case-insensitive).
func (s *Set) ByName(name string) (*Entry, bool) {
	for _, e := range s.List() {
		if strings.EqualFold(e.Config.Name, name) {
			return e, true
		}
	}
	return nil, false
}

// ByRef finds a directory by id (decimal) or name, as the login request's
// "directory" field and the API's {id} allow.
func (s *Set) ByRef(ref string) (*Entry, bool) {
	if id, err := strconv.ParseUint(ref, 10, 64); err == nil {
		if e, ok := s.ByID(id); ok {
			return e, true
		}
	}
	return s.ByName(ref)
}

// ByDomain lists the directories whose login domain is domain.
func (s *Set) ByDomain(domain string) []*Entry {
	var out []*Entry
	for _, e := range s.List() {
		if strings.EqualFold(e.Config.DomainName(), domain) {
			out = append(out, e)
		}
	}
	return out
}
