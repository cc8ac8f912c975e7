package e2e

// Secrets never leave the process (STYLE: config.Secret never in logs or
// answers), and the command line (SPEC §9).

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/internal/ldaptest"
)

// serviceAccount adds a bind account with a random password to srv, so a
// leak of the bind password is a substring no code could produce by chance.
func serviceAccount(t *testing.T, srv *ldaptest.Server) (dn, password string) {
	t.Helper()
	password = "Bind-" + randHex(t, 12)
	dn = "cn=svc" + randHex(t, 4) + "," + srv.BaseDN
	conn := srv.AdminConn(t)
	req := ldap.NewAddRequest(dn, nil)
	req.Attribute("objectClass", []string{"organizationalRole", "simpleSecurityObject"})
	req.Attribute("userPassword", []string{password})
	if err := conn.Add(req); err != nil {
		t.Fatalf("adding the service account: %v", err)
	}
	return dn, password
}

// TestSecretsNeverLeak: with the log at debug, a whole flow — a directory
// created through the API with an inline bind password, a refused one with
// a wrong password, sync, logins good and bad by JSON, form and Basic —
// leaves no bind password, user password, admin token or session token in
// the log, /metrics, or any admin API answer.
func TestSecretsNeverLeak(t *testing.T) {
	bin := opsBinary(t)
	srv := ldaptest.StartSlapd(t)
	fx := srv.NewFixture(t)
	svcDN, bindPassword := serviceAccount(t, srv)
	wrongBind := "Bind-wrong-" + randHex(t, 12)
	wrongUser := "User-wrong-" + randHex(t, 12)
	up := startEchoUpstream(t, 0)
	c := newOpsConfig(t, up.URL, "")
	c.LogLevel = "debug"
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeConfig(t, path, c.yaml())
	p := startBinary(t, bin, path, c.Listen)
	g := &gate{t: t, base: p.base}

	// Every answer of the flow, except the logins' own (they hand out the
	// session token by design).
	answers := map[string]string{} // "METHOD path" → body
	call := func(want int, method, path, auth string, body any) map[string]any {
		t.Helper()
		code, out, raw := g.call(method, path, auth, body)
		if code != want {
			t.Fatalf("%s %s: %d, want %d: %s", method, path, code, want, raw)
		}
		answers[method+" "+path] += string(raw)
		return out
	}
	call(200, "POST", "/auth/v4/internal/settings/log/level", "admin", "debug")

	body := directoryBody(fx, "corp", "username_at_domain", wrongBind)
	body["bind_dn"] = svcDN
	call(422, "POST", "/auth/v4/ldap", "admin", body)
	body["bind_password"] = bindPassword
	created := call(200, "POST", "/auth/v4/ldap", "admin", body)
	dirPath := "/auth/v4/ldap/" + id(created["id"])
	call(200, "PATCH", dirPath, "admin", map[string]string{"note": "secrets test"})
	call(422, "PATCH", dirPath, "admin", map[string]string{"bind_password": wrongBind})
	run := call(200, "POST", dirPath+"/sync", "admin", nil)
	if run["result"] != "success" {
		t.Fatalf("sync with the service account: %v", run)
	}

	// Logins: JSON good and bad, form, Basic good and bad.
	token := g.login(fx.Login("alice"), ldaptest.Password)
	call(401, "POST", "/auth/v4/public/token", "", map[string]string{"username": fx.Login("bob"), "password": wrongUser})
	call(401, "POST", "/auth/v4/public/token", "", map[string]string{"username": "nobody@example.com", "password": wrongUser})
	form := url.Values{"username": {fx.Login("bob")}, "password": {ldaptest.Password}, "rd": {"/home"}}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.PostForm(p.base+"/login", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var cookieToken string
	for _, ck := range resp.Cookies() {
		cookieToken = ck.Value
	}
	if resp.StatusCode != http.StatusSeeOther || len(cookieToken) < 20 {
		t.Fatalf("form login: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	form.Set("password", wrongUser)
	if resp, err := client.PostForm(p.base+"/login", form); err != nil || resp.StatusCode != 401 {
		t.Fatalf("form login with a wrong password: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	for _, cred := range []struct {
		user, pass string
		want       int
	}{{fx.Login("frank"), ldaptest.Password, 200}, {fx.Login("frank"), ldaptest.Password, 200}, {fx.Login("frank"), wrongUser, 401}} {
		if code, _ := get(t, p.base+"/app/basic", "Authorization", basic(cred.user, cred.pass), "Accept", "application/json"); code != cred.want {
			t.Fatalf("Basic %s: %d, want %d", cred.user, code, cred.want)
		}
	}
	call(200, "GET", "/auth/v4/whoami", token, nil)
	call(200, "GET", "/auth/v4/public/directories", "", nil)

	// Every read of the admin API.
	call(200, "GET", "/auth/v4/ldap", "admin", nil)
	call(200, "GET", dirPath, "admin", nil)
	call(200, "POST", dirPath+"/check", "admin", nil)
	call(200, "GET", dirPath+"/preview", "admin", nil)
	call(200, "GET", dirPath+"/runs", "admin", nil)
	call(200, "GET", dirPath+"/runs/"+id(run["id"]), "admin", nil)
	us := call(200, "GET", "/auth/v4/user", "admin", nil)
	for _, u := range us["list"].([]any) {
		call(200, "GET", "/auth/v4/user/"+id(u.(map[string]any)["id"]), "admin", nil)
	}
	call(200, "GET", "/auth/v4/user?state=active&limit=2", "admin", nil)
	g.must(200, "DELETE", "/auth/v4/token/"+token, token, nil)

	// Malformed requests carrying every credential form: fasthttp refuses
	// them while parsing and used to log the whole request at WARN.
	basicCreds := strings.TrimPrefix(basic(fx.Login("frank"), ldaptest.Password), "Basic ")
	sendMalformed(t, c.Listen, malformedWithCredentials(map[string]string{
		"Authorization: Bearer " + adminToken: "", "Authorization: Bearer " + token: "",
		"Cookie: ldapgate_session=" + cookieToken: "", "x-xsrf-token: " + token: "",
		"Authorization: Basic " + basicCreds: "",
	}, url.Values{"username": {fx.Login("bob")}, "password": {wrongUser}}.Encode(), token))
	waitLog(t, p.stderr, 10*time.Second, `"component":"fasthttp"`)

	_, metricsText := scrape(t, "http://"+c.Metrics)
	_, readyText := get(t, "http://"+c.Metrics+"/readyz")
	logs := p.stderr.String()
	// The places searched hold what they should, or the search proves nothing.
	if !strings.Contains(logs, `"level":"DEBUG"`) || !strings.Contains(logs, "sync finished") ||
		!strings.Contains(answers["GET "+dirPath], svcDN) || !strings.Contains(string(metricsText), "ldapgate_logins_total") {
		t.Fatalf("the log, the directory answer or /metrics lack their content")
	}

	secrets := map[string]string{
		"bind password": bindPassword, "wrong bind password": wrongBind,
		"user password": ldaptest.Password, "wrong user password": wrongUser,
		"admin token": adminToken, "session token": token, "cookie session token": cookieToken,
		"Basic credentials": basicCreds,
	}
	places := map[string]string{"log": logs, "/metrics": string(metricsText), "/readyz": string(readyText)}
	for req, a := range answers {
		places["answer to "+req] = a
	}
	for place, text := range places {
		for what, secret := range secrets {
			if i := strings.Index(text, secret); i >= 0 {
				t.Errorf("the %s appears in the %s: …%s…", what, place, text[max(0, i-120):min(len(text), i+len(secret)+40)])
			}
		}
	}
}

// malformedWithCredentials builds requests that fail to parse after (or
// around) credentials: each header line of creds before a header with a
// space before its colon, a bad Content-Length or an oversized head; a
// form body after a bad header; a session token in the path of a request
// line missing its protocol.
func malformedWithCredentials(creds map[string]string, form, token string) []string {
	var out []string
	for h := range creds {
		out = append(out,
			"GET /app HTTP/1.1\r\nHost: x\r\n"+h+"\r\nX-Bad : 1\r\n\r\n",
			"POST /app HTTP/1.1\r\nHost: x\r\n"+h+"\r\nContent-Length: zz\r\n\r\n",
			"GET /app HTTP/1.1\r\nHost: x\r\n"+h+"\r\nX-Big: "+strings.Repeat("a", 20<<10)+"\r\n\r\n",
			"GET /app HTTP/9.9\r\nHost: x\r\n"+h+"\r\n\r\n",
		)
	}
	return append(out,
		fmt.Sprintf("POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"+
			"Content-Length: %d\r\nX-Bad : 1\r\n\r\n%s", len(form), form),
		"DELETE /auth/v4/token/"+token+"\r\nHost: x\r\n\r\n",
		"DELETE /auth/v4/token/"+token+" HTTP/1.1 junk\r\nHost: x\r\n\r\n",
	)
}

// sendMalformed sends each raw request on its own connection and reads the
// answer until the server closes.
func sendMalformed(t *testing.T, addr string, reqs []string) {
	t.Helper()
	for _, r := range reqs {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(conn, r)
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.ReadAll(conn)
		conn.Close()
	}
}

func runCmd(t *testing.T, bin string, args ...string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %v: %v", bin, args, err)
	}
	return code, out.String()
}

// TestOpsCommandLine: check-config reports each problem with its key and
// line and exits 1 (never printing a secret), a good file exits 0, and
// version prints one.
func TestOpsCommandLine(t *testing.T) {
	bin := opsBinary(t)
	dir := t.TempDir()
	secret := "Inline-" + randHex(t, 10)
	good := fmt.Sprintf(`listen: "127.0.0.1:18080"
metrics_listen: "127.0.0.1:19090"
upstream: "http://127.0.0.1:3000"
data_dir: %q
directories:
  - name: corp
    type: ldap
    urls: ["ldap://127.0.0.1:389"]
    base_dn: "dc=example,dc=com"
    bind_dn: "cn=admin,dc=example,dc=com"
    bind_password: %q
    role_mapping:
      admin: ["cn=admins,ou=groups,dc=example,dc=com"]
`, filepath.Join(dir, "data"), secret)
	secretFile := filepath.Join(dir, "bind")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(good, "data_dir:", "upstream_timeout: 5s\ndata_dir:", 1) + // line 4
		fmt.Sprintf("    bind_password_file: %q\n", secretFile) + // both password forms: an error next to the secret
		"    shedule: hourly\n" // line 16, a typo
	for _, c := range []struct {
		name, content string
		code          int
		want          []string
	}{
		{"good", good, 0, []string{"ok"}},
		{"unknown keys", bad, 1, []string{"upstream_timeout", "line 4", "shedule", "line 16"}},
		{"not YAML", "listen: [\n", 1, []string{"line"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(path, []byte(c.content), 0o600); err != nil {
				t.Fatal(err)
			}
			code, out := runCmd(t, bin, "check-config", "-config", path)
			if code != c.code {
				t.Fatalf("exit %d, want %d: %s", code, c.code, out)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q: %s", w, out)
				}
			}
			if strings.Contains(out, secret) {
				t.Errorf("check-config printed the bind password: %s", out)
			}
		})
	}
	if code, out := runCmd(t, bin, "check-config", "-config", filepath.Join(dir, "missing.yaml")); code != 1 || !strings.Contains(out, "missing.yaml") {
		t.Errorf("missing file: exit %d: %s", code, out)
	}
	code, out := runCmd(t, bin, "version")
	if f := strings.Fields(out); code != 0 || len(f) != 2 || f[0] != "ldapgate" || f[1] == "" {
		t.Errorf("version: exit %d: %q", code, out)
	}
	if code, out := runCmd(t, bin, "no-such-command"); code != 2 || !strings.Contains(out, "usage") {
		t.Errorf("unknown command: exit %d: %s", code, out)
	}
}
