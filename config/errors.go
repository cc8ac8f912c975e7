package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// FieldError is one problem of the file: the key path as written in YAML
// (directories[0].type), the 1-based line it is on (0 when unknown, e.g. for
// a directory created through the API) and what is wrong.
type FieldError struct {
	Path string
	Line int
	Msg  string
}

// Error reads `directories[0].type: unknown type "bogus" (line 6)`.
func (e FieldError) Error() string {
	var b strings.Builder
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Line > 0 {
		fmt.Fprintf(&b, " (line %d)", e.Line)
	}
	return b.String()
}

// Errors is every problem found in one pass, so an operator fixes the file
// at once instead of one restart per typo. Load returns it as its error;
// callers take it out with errors.As.
type Errors []FieldError

// Error lists the problems one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Err returns es as an error, or nil when it is empty (a nil Errors stored
// in an error interface would not compare equal to nil).
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// sortByLine orders errors as they appear in the file; those without a line
// (checks across the file, or absent keys at the top) come last.
func sortByLine(es []FieldError) {
	slices.SortStableFunc(es, func(a, b FieldError) int {
		switch {
		case a.Line == b.Line:
			return 0
		case a.Line == 0:
			return 1
		case b.Line == 0:
			return -1
		}
		return cmp.Compare(a.Line, b.Line)
	})
}

// lineIndex maps key paths to lines.
type lineIndex struct{ m map[string]int }

func (l *lineIndex) get() map[string]int {
	if l == nil {
		return nil
	}
	return l.m
}

// collector gathers errors, finding each path's line in the file.
type collector struct {
	lines map[string]int
	errs  Errors
}

func (c *collector) add(path, format string, args ...any) {
	c.errs = append(c.errs, FieldError{Path: path, Line: lineOf(c.lines, path), Msg: fmt.Sprintf(format, args...)})
}

// addNear reports on path, with the line of another key (the one that
// makes path necessary: bind_dn for a missing bind_password).
func (c *collector) addNear(path, near, format string, args ...any) {
	line := lineOf(c.lines, path)
	if l, ok := c.lines[near]; ok {
		line = l
	}
	c.errs = append(c.errs, FieldError{Path: path, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// lineOf finds the line of path, or of its nearest ancestor present in the
// file (an absent key is reported on the line of the entry that lacks it).
func lineOf(lines map[string]int, path string) int {
	for path != "" {
		if l, ok := lines[path]; ok {
			return l
		}
		path = parentPath(path)
	}
	return 0
}

func parentPath(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndexByte(p, '['); i >= 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[:i]
	}
	return ""
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}
