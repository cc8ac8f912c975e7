package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSecurityNamesRealTests keeps SECURITY.md honest: every `pkg/TestName`
// (or FuzzName) it cites is a function of that package's tests, and a name
// ending in * matches at least one. A renamed or deleted test fails here.
func TestSecurityNamesRealTests(t *testing.T) {
	doc, err := os.ReadFile("SECURITY.md")
	if err != nil {
		t.Fatal(err)
	}
	refs := regexp.MustCompile("`([a-z0-9/]+)/((?:Test|Fuzz)[A-Za-z0-9_]*)(\\*?)`").FindAllStringSubmatch(string(doc), -1)
	if len(refs) < 30 {
		t.Fatalf("SECURITY.md cites %d tests; the threat model needs one per point", len(refs))
	}
	for _, r := range refs {
		pkg, name, prefix := r[1], r[2], r[3] == "*"
		files, _ := filepath.Glob(filepath.Join(pkg, "*_test.go"))
		if len(files) == 0 {
			t.Errorf("%s: no test files in %s", r[0], pkg)
			continue
		}
		found := false
		for _, f := range files {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(string(src), "\n") {
				fn, ok := strings.CutPrefix(line, "func "+name)
				if ok && (prefix || strings.HasPrefix(fn, "(")) {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("SECURITY.md cites %s, which %s does not define", r[0], pkg)
		}
	}
}
