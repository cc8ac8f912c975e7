package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// The binary is built once per test run, not once per test: a link of the
// whole module takes seconds on a shared 2-core machine, longer than the
// tests that use it.
var sharedBin struct {
	once sync.Once
	dir  string
	path string
	err  error
	out  []byte
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, dir := range []string{sharedBin.dir, releaseBin.dir} {
		if dir != "" {
			os.RemoveAll(dir)
		}
	}
	os.Exit(code)
}

// opsBinary builds ldapgate with the Dockerfile's `go build`, once for all
// the tests of one run.
func opsBinary(t *testing.T) string {
	t.Helper()
	b := &sharedBin
	b.once.Do(func() {
		if b.dir, b.err = os.MkdirTemp("", "ldapgate-e2e-"); b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, "ldapgate")
		cmd := exec.Command("go", "build", "-o", b.path, ".")
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		b.out, b.err = cmd.CombinedOutput()
	})
	if b.err != nil {
		t.Fatalf("go build: %v\n%s", b.err, b.out)
	}
	return b.path
}
