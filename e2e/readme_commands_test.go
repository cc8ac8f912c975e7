package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ldapgate/ldapgate/internal/ldaptest"
)

// The README's ```sh blocks are each marked <!-- readme-test: NAME -->
// and run here, command by command, against the built binary. A command
// the test does not know fails it: the README cannot grow an example
// nobody ran. What is not run is listed, with why, in readmeSkipped.
var readmeSkipped = map[string]string{
	"./scripts/test.sh":         "the whole suite; CI runs it",
	"go build -o ldapgate .":    "opsBinary builds the binary the same way",
	"./ldapgate serve -config ": "runs until stopped; every e2e ops test starts serve",
}

// readmeShBlocks returns the commands of each marked ```sh block: comment
// tails dropped, a command continued over lines while a quote is open.
func readmeShBlocks(t *testing.T) map[string][]string {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	all := regexp.MustCompile("(?m)^```sh$").FindAllIndex(readme, -1)
	marked := regexp.MustCompile("(?ms)^<!-- readme-test: ([a-z-]+) -->\n```sh\n(.*?)^```$").FindAllSubmatch(readme, -1)
	if len(marked) != len(all) {
		t.Fatalf("README has %d ```sh blocks, %d marked <!-- readme-test: NAME -->: mark every one", len(all), len(marked))
	}
	blocks := map[string][]string{}
	for _, m := range marked {
		var cmds []string
		var cur strings.Builder
		sc := bufio.NewScanner(bytes.NewReader(m[2]))
		for sc.Scan() {
			line := sc.Text()
			if cur.Len() == 0 {
				if l := strings.TrimSpace(line); l == "" || strings.HasPrefix(l, "#") {
					continue
				}
				// A trailing "   # comment" outside quotes.
				if i := strings.Index(line, "  #"); i >= 0 && strings.Count(line[:i], "'")%2 == 0 && strings.Count(line[:i], `"`)%2 == 0 {
					line = strings.TrimRight(line[:i], " ")
				}
			}
			cur.WriteString(line)
			if strings.Count(cur.String(), "'")%2 == 1 {
				cur.WriteString("\n")
				continue
			}
			cmds = append(cmds, cur.String())
			cur.Reset()
		}
		blocks[string(m[1])] = cmds
	}
	return blocks
}

func skippedCommand(cmd string) (string, bool) {
	for prefix, why := range readmeSkipped {
		if strings.HasPrefix(cmd, prefix) {
			return why, true
		}
	}
	return "", false
}

// TestReadmeCommands runs the "demo" and "running" blocks.
func TestReadmeCommands(t *testing.T) {
	bin := opsBinary(t)
	blocks := readmeShBlocks(t)
	for name := range blocks {
		if name != "demo" && name != "running" && name != "admin-api" {
			t.Errorf("README block %q is run by no test", name)
		}
	}
	example, err := filepath.Abs("../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	run := func(cmd string, stdin string) (string, int) {
		t.Helper()
		c := exec.Command("bash", "-c", cmd)
		c.Stdin = strings.NewReader(stdin)
		out, err := c.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		return string(out), code
	}
	for _, cmd := range blocks["running"] {
		if why, ok := skippedCommand(cmd); ok {
			t.Logf("not run: %s (%s)", cmd, why)
			continue
		}
		real := strings.ReplaceAll(cmd, "./ldapgate", bin)
		real = strings.ReplaceAll(real, "/etc/ldapgate/config.yaml", example)
		out, code := run(real, "")
		switch {
		case strings.Contains(cmd, "check-config"):
			if code != 0 || !strings.Contains(out, ": ok (1 directories, 1 local users)") {
				t.Errorf("%s: exit %d\n%s", cmd, code, out)
			}
		case strings.HasSuffix(cmd, " version"):
			if code != 0 || !strings.HasPrefix(out, "ldapgate ") {
				t.Errorf("%s: exit %d %q", cmd, code, out)
			}
		case strings.Contains(cmd, "hash-password"):
			if code != 0 || !strings.HasPrefix(out, "$argon2id$") {
				t.Errorf("%s: exit %d %q", cmd, code, out)
			}
		default:
			t.Errorf("README command %q is run by no test", cmd)
		}
	}

	for _, cmd := range blocks["demo"] {
		if why, ok := skippedCommand(cmd); ok {
			t.Logf("not run: %s (%s)", cmd, why)
			continue
		}
		if cmd != "go run . demo" {
			t.Errorf("README command %q is run by no test", cmd)
			continue
		}
		readmeDemo(t, bin)
	}
}

// readmeDemo: `ldapgate demo` (the binary `go run . demo` builds) prints
// the accounts, and they log in as the README says.
func readmeDemo(t *testing.T, bin string) {
	listen := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &logBuf{}
	cmd := exec.CommandContext(ctx, bin, "demo", "-listen", listen)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	cmd.WaitDelay = 20 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		if err := cmd.Wait(); err != nil && ctx.Err() == nil {
			t.Errorf("demo: %v", err)
		}
	}()
	eventually(t, 30*time.Second, "the demo prints its accounts", func() (bool, string) {
		s := out.String()
		return strings.Contains(s, "alice@example.org / demo") && strings.Contains(s, "http://"+listen+"/"), s
	})
	g := &gate{t: t, base: "http://" + listen}
	g.must(200, "POST", "/auth/v4/public/token", "", map[string]string{"username": "bob@example.org", "password": "demo"})
	// carol is "refused": her bind fails on the locked account (401), or
	// the store's blocked_in_ldap refuses her (403).
	if code, _, raw := g.call("POST", "/auth/v4/public/token", "", map[string]string{"username": "carol@example.org", "password": "demo"}); code != 401 && code != 403 {
		t.Errorf("carol: %d %s, want refused", code, raw)
	}
	// The page behind the login shows bob the identity headers sent;
	// alice, an admin, is sent on to the admin console.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, who := range []string{"bob", "alice"} {
		req, _ := http.NewRequest("GET", g.base+"/", nil)
		req.Header.Set("Authorization", "Bearer "+g.login(who+"@example.org", "demo"))
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body bytes.Buffer
		_, _ = body.ReadFrom(resp.Body)
		resp.Body.Close()
		switch who {
		case "bob":
			if resp.StatusCode != 200 || !strings.Contains(body.String(), "bob@example.org") || !strings.Contains(body.String(), "X-Forwarded-Role") {
				t.Errorf("demo page for bob: %d\n%s", resp.StatusCode, body.String())
			}
		case "alice":
			if loc := resp.Header.Get("Location"); resp.StatusCode/100 != 3 || loc != "/admin" {
				t.Errorf("demo page for alice: %d to %q, want a redirect to /admin", resp.StatusCode, loc)
			}
		}
	}
}

// TestReadmeAdminAPI runs the README's "Admin API" block with curl, one
// command at a time, against the built binary and a real slapd. $T and $G
// are the block's own first lines with the token file and address swapped
// in; ids 1 (directory), 42 (run) and 7 (user) become the ones this story
// made. Each answer is checked against what the README says of it.
func TestReadmeAdminAPI(t *testing.T) {
	bin := opsBinary(t)
	srv := ldaptest.StartSlapd(t)
	fx := srv.NewFixture(t)
	up := startEchoUpstream(t, 0)
	c := newOpsConfig(t, up.URL, "")
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeConfig(t, path, c.yaml())
	startBinary(t, bin, path, c.Listen)
	g := &gate{t: t, base: "http://" + c.Listen}
	work := t.TempDir()

	cmds := readmeShBlocks(t)["admin-api"]
	if len(cmds) < 3 || !strings.HasPrefix(cmds[0], `T="Authorization: Bearer $(cat /run/secrets/admin_token)"`) ||
		cmds[1] != "G=http://127.0.0.1:8080" {
		t.Fatalf("the Admin API block no longer starts with T= and G=: %q", cmds[:min(2, len(cmds))])
	}
	prelude := strings.ReplaceAll(cmds[0], "/run/secrets/admin_token", c.TokenFile) + "\nG=" + g.base + "\n"
	ids := map[string]string{}
	curl := func(cmd string) (int, map[string]any, []byte) {
		t.Helper()
		for _, r := range []struct{ from, to, key string }{
			{"/auth/v4/ldap/1", "/auth/v4/ldap/", "dir"}, {"directory=1&", "directory=", "dir"},
			{"/runs/42", "/runs/", "run"}, {"/auth/v4/user/7", "/auth/v4/user/", "user"},
		} {
			if strings.Contains(cmd, r.from) {
				if ids[r.key] == "" {
					t.Fatalf("%s: no %s id yet", cmd, r.key)
				}
				to := r.to + ids[r.key]
				if strings.HasSuffix(r.from, "&") {
					to += "&"
				}
				cmd = strings.ReplaceAll(cmd, r.from, to)
			}
		}
		// -w adds the status on a line of its own after the body.
		sh := exec.Command("bash", "-c", prelude+strings.Replace(cmd, "curl ", "curl -w '\\n%{http_code}' ", 1))
		sh.Dir = work
		out, err := sh.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", cmd, err, out)
		}
		i := bytes.LastIndexByte(out, '\n')
		var code int
		fmt.Sscan(string(out[i+1:]), &code)
		body := out[:max(i, 0)]
		var m map[string]any
		_ = json.Unmarshal(body, &m)
		return code, m, body
	}

	for _, cmd := range cmds[2:] {
		code, out, raw := curl(cmd)
		want := 200
		check := func() string { return "" }
		switch {
		case strings.Contains(cmd, "-X PATCH $G/auth/v4/ldap/1 -d '{\"urls\""):
			// Moving the directory re-checks the connection with the
			// password given again; dc2.example.com is not reachable
			// here, so the check fails and nothing changes.
			want = 422
			check = func() string {
				if e, _ := out["error"].(map[string]any); e == nil || e["code"] != "ldap_check_failed" {
					return "no check error"
				}
				return ""
			}
		case strings.Contains(cmd, "-X POST $G/auth/v4/ldap -d"):
			// The README's Active Directory at dc1.example.com: not
			// reachable here, so the check fails and nothing is saved.
			want = 422
			check = func() string {
				if e, _ := out["error"].(map[string]any); e == nil || e["code"] != "ldap_check_failed" && e["code"] != "invalid_directory" {
					return "no check error"
				}
				if n := g.must(200, "GET", "/auth/v4/ldap", "admin", nil)["size"]; n != float64(0) {
					return fmt.Sprintf("%v directories saved", n)
				}
				// The story goes on with a directory that answers (legacy
				// naming, so that migrate has work to do).
				body := directoryBody(fx, "corp", "email", fx.Dir.BindPassword.Reveal())
				body["domain"] = "corp.example.org" // new names differ from the mails
				created := g.must(200, "POST", "/auth/v4/ldap", "admin", body)
				ids["dir"] = id(created["id"])
				return ""
			}
		case strings.HasSuffix(cmd, "$G/auth/v4/ldap"):
			check = func() string {
				if out["size"] != float64(1) || bytes.Contains(raw, []byte(fx.Dir.BindPassword.Reveal())) {
					return "want one directory, never its bind password"
				}
				return ""
			}
		case strings.Contains(cmd, "/auth/v4/ldap/schedule?expr="):
			check = func() string {
				next, _ := out["next"].([]any)
				if len(next) != 3 {
					return fmt.Sprintf("want three next run times, got %v", out["next"])
				}
				for _, n := range next {
					ts, err := time.Parse(time.RFC3339, fmt.Sprint(n))
					if err != nil || ts.Weekday() != time.Monday || ts.Hour() != 3 || ts.Minute() != 0 {
						return fmt.Sprintf("%v is not a Monday 03:00 (%v)", n, err)
					}
				}
				return ""
			}
		case strings.Contains(cmd, "/auth/v4/user?q="):
			check = func() string {
				if _, ok := out["list"].([]any); !ok {
					return "want a list"
				}
				return ""
			}
		case strings.HasSuffix(cmd, "/check"):
			check = func() string {
				if out["users"] != float64(len(fx.Users)) || out["groups"] != float64(len(fx.Groups)) {
					return fmt.Sprintf("want %d users, %d groups", len(fx.Users), len(fx.Groups))
				}
				return ""
			}
		case strings.HasSuffix(cmd, "/preview"):
			check = func() string {
				if out["size"] != float64(len(fx.Users)) {
					return "want a row per directory user"
				}
				return ""
			}
		case strings.Contains(cmd, "format=csv"):
			check = func() string {
				b, err := os.ReadFile(filepath.Join(work, "preview.csv"))
				if err != nil || !bytes.HasPrefix(b, []byte("username,email,role,exists,action\n")) {
					return fmt.Sprintf("preview.csv: %v %q", err, b)
				}
				return ""
			}
		case strings.Contains(cmd, "dry_run=true"):
			check = func() string {
				ch, _ := out["changes"].([]any)
				if out["result"] != "dry_run" || len(ch) == 0 || ch[0].(map[string]any)["planned"] != true {
					return "want the plan, its changes planned"
				}
				if n := g.must(200, "GET", "/auth/v4/user?directory="+ids["dir"], "admin", nil)["size"]; n != float64(0) {
					return "the dry run wrote users"
				}
				return ""
			}
		case strings.HasSuffix(cmd, "/sync"):
			check = func() string {
				ids["run"] = id(out["id"])
				if out["result"] != "success" || out["counts"].(map[string]any)["create"] == nil {
					return "want a successful sync creating users"
				}
				return ""
			}
		case strings.Contains(cmd, "force=true"):
			check = func() string {
				if out["result"] != "success" || out["forced"] != true {
					return "want a forced, successful run"
				}
				return ""
			}
		case strings.HasSuffix(cmd, "/runs"):
			check = func() string {
				if out["size"] != float64(3) {
					return "want the dry run, the sync and the forced sync"
				}
				return ""
			}
		case strings.Contains(cmd, "/runs/42"):
			check = func() string {
				if l, _ := out["list"].([]any); len(l) == 0 || l[0].(map[string]any)["action"] != "create" {
					return "want the sync's creates"
				}
				return ""
			}
		case strings.HasSuffix(cmd, "/migrate"):
			check = func() string {
				if out["renamed"] == nil || out["renamed"].(float64) < 1 {
					return "want legacy names renamed"
				}
				return ""
			}
		case strings.Contains(cmd, "-X PATCH $G/auth/v4/ldap/1"):
			check = func() string {
				if out["note"] != "moved to DC2" {
					return "want the new note"
				}
				return ""
			}
		case strings.Contains(cmd, "-X DELETE $G/auth/v4/ldap/1"):
			check = func() string {
				// Every user was the directory's (ops@local is gone).
				if u := g.must(200, "GET", "/auth/v4/user?state=active", "admin", nil); u["size"] != float64(0) {
					return fmt.Sprintf("users still active: %v", u)
				}
				return ""
			}
		case strings.Contains(cmd, "/auth/v4/user?state=blocked"):
			check = func() string {
				// Nobody is blocked yet (carol is blocked_in_ldap): the
				// list's shape is what there is to check.
				if l, ok := out["list"].([]any); !ok || out["size"] != float64(len(l)) {
					return "want a list"
				}
				return ""
			}
		case strings.Contains(cmd, "-X POST $G/auth/v4/user -d"):
			check = func() string {
				ids["user"] = id(out["id"])
				if out["source"] != "local" || out["role"] != "admin" {
					return "want a local admin"
				}
				return ""
			}
		case strings.HasSuffix(cmd, "/block"):
			check = func() string {
				if out["state"] != "blocked" || out["block_reason"] != "admin" {
					return "want an admin block"
				}
				return ""
			}
		case strings.HasSuffix(cmd, "/unblock"):
			check = func() string {
				if out["state"] != "active" {
					return "want active"
				}
				return ""
			}
		case strings.Contains(cmd, "/password -d"):
			check = func() string {
				g.must(200, "POST", "/auth/v4/public/token", "", map[string]string{"username": "ops@local", "password": "..."})
				return ""
			}
		case strings.Contains(cmd, "-X DELETE $G/auth/v4/user/7"):
			check = func() string {
				g.must(404, "GET", "/auth/v4/user/"+ids["user"], "admin", nil)
				return ""
			}
		default:
			t.Errorf("README command %q is run by no test", cmd)
			continue
		}
		if code != want {
			t.Fatalf("%s\n→ %d, want %d: %s", cmd, code, want, raw)
		}
		if msg := check(); msg != "" {
			t.Fatalf("%s\n→ %s: %s", cmd, msg, raw)
		}
	}
}

// TestReadmeInlineCurl runs the curl commands the README gives inline
// (`curl ...` in running text) against the built binary: each answers 200.
func TestReadmeInlineCurl(t *testing.T) {
	bin := opsBinary(t)
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	spans := regexp.MustCompile("`(curl [^`]+)`").FindAllSubmatch(readme, -1)
	if len(spans) == 0 {
		t.Fatal("no inline curl in the README: drop this test or the regexp is wrong")
	}
	up := startEchoUpstream(t, 0)
	c := newOpsConfig(t, up.URL, "")
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeConfig(t, path, c.yaml())
	startBinary(t, bin, path, c.Listen)
	for _, m := range spans {
		cmd := strings.NewReplacer("127.0.0.1:8080", c.Listen, "127.0.0.1:9090", c.Metrics,
			"/run/secrets/admin_token", c.TokenFile).Replace(string(m[1]))
		out, err := exec.Command("bash", "-c", strings.Replace(cmd, "curl ", "curl -s -o /dev/null -w '%{http_code}' ", 1)).CombinedOutput()
		if err != nil || string(out) != "200" {
			t.Errorf("%s: %v %s, want 200", m[1], err, out)
		}
	}
}
