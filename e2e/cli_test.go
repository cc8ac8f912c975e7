package e2e

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// TestHelpListsEveryCommand: `help`, `-h` and `--help` print every command
// on stdout and exit 0. A leading "-" used to mean serve's flags, so -h and
// --help printed "Usage of serve" and exited 2.
func TestHelpListsEveryCommand(t *testing.T) {
	bin := opsBinary(t)
	commands := []string{"serve", "check-config", "demo", "hash-password", "healthcheck", "migrate-store", "version", "help"}
	for _, arg := range []string{"help", "-h", "--help", "-help"} {
		t.Run(arg, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(bin, arg)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("ldapgate %s: %v\nstdout: %s\nstderr: %s", arg, err, &stdout, &stderr)
			}
			for _, c := range commands {
				if !strings.Contains(stdout.String(), "ldapgate "+c) && !strings.Contains(stdout.String(), "ldapgate ["+c+"]") {
					t.Errorf("ldapgate %s does not list %q:\n%s", arg, c, &stdout)
				}
			}
		})
	}
	// An unknown command is still an error.
	err := exec.Command(bin, "frobnicate").Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Errorf("ldapgate frobnicate: %v, want exit 2", err)
	}
}
