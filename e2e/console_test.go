package e2e

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/ldapgate/ldapgate/internal/ldaptest"
)

// consoleUI drives the admin console in Chromium as an operator would:
// fields are found by their label's text and buttons by their words, so a
// field that loses its label fails the test.
type consoleUI struct {
	t    *testing.T
	ctx  context.Context
	base string
	// shots: this test writes the README's screenshots.
	shots bool
}

func newConsoleUI(t *testing.T, base string) *consoleUI {
	c := &consoleUI{t: t, ctx: browserFor(t, 5*time.Minute), base: base}
	c.do(chromedp.EmulateViewport(1200, 800))
	return c
}

// field is the control that the label with this exact text names.
func field(label string) chromedp.Search {
	return chromedp.Search(fmt.Sprintf(`//*[@id=//label[normalize-space()=%q]/@for]`, label))
}

func button(words string) chromedp.Search {
	return chromedp.Search(fmt.Sprintf(`//button[normalize-space()=%q]`, words))
}

func link(words string) chromedp.Search {
	return chromedp.Search(fmt.Sprintf(`//a[normalize-space()=%q]`, words))
}

func labelled(text string) chromedp.Search {
	return chromedp.Search(fmt.Sprintf(`//label[normalize-space()=%q]`, text))
}

// confirm answers the page's confirmation dialog with its button labelled
// words, from the keyboard (focus and Enter, as an operator without a mouse
// would; a mouse click into the just-opened modal once missed on a loaded
// CI machine), and waits until the dialog has closed.
func (c *consoleUI) confirm(words string) {
	c.t.Helper()
	c.do(chromedp.WaitVisible(chromedp.ID("confirm-dialog")),
		chromedp.SendKeys(chromedp.Search(fmt.Sprintf(`//dialog[@id='confirm-dialog']//button[normalize-space()=%q]`, words)), "\r"),
		chromedp.WaitNotVisible(chromedp.ID("confirm-dialog")))
}

func (c *consoleUI) do(steps ...chromedp.Action[chromedp.Void]) {
	c.t.Helper()
	if err := chromedp.Do(c.ctx, steps...); err != nil {
		c.t.Fatal(err)
	}
}

// waitFor polls a JavaScript predicate until it holds (or a minute passes:
// a sync of a shared directory on a loaded machine can be slow).
func (c *consoleUI) waitFor(what, expr string) {
	c.t.Helper()
	if _, err := chromedp.Run(c.ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(time.Minute), chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
		page, _ := chromedp.Run(c.ctx, chromedp.Evaluate[string](`document.querySelector('main') ? document.querySelector('main').innerText : document.body.innerText`))
		c.t.Fatalf("waiting for %s: %v\npage:\n%s", what, err, page)
	}
}

// waitText waits until the element matched by css contains s.
func (c *consoleUI) waitText(css, s string) {
	c.t.Helper()
	c.waitFor(fmt.Sprintf("%s to contain %q", css, s),
		fmt.Sprintf(`(() => { const e = document.querySelector(%s); return !!e && !e.closest('[hidden]') && e.textContent.includes(%s); })()`, js(css), js(s)))
}

func (c *consoleUI) text(css string) string {
	c.t.Helper()
	s, err := chromedp.Run(c.ctx, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%s) || {}).textContent || ''`, js(css))))
	if err != nil {
		c.t.Fatal(err)
	}
	return s
}

// typeIn replaces the value of the labelled field by typing.
func (c *consoleUI) typeIn(label, s string) {
	c.t.Helper()
	c.do(chromedp.WaitVisible(field(label)))
	c.pick(label, "")
	if err := chromedp.Do(c.ctx, chromedp.SendKeys(field(label), s)); err != nil {
		c.t.Fatalf("typing into %q: %v", label, err)
	}
}

// pick sets a select or time field, with the events a person's choice fires.
func (c *consoleUI) pick(label, value string) {
	c.t.Helper()
	ok, err := chromedp.Run(c.ctx, chromedp.Evaluate[bool](fmt.Sprintf(`(() => {
		const l = Array.from(document.querySelectorAll('label')).find(l => l.textContent.trim() === %s);
		const e = l && document.getElementById(l.htmlFor);
		if (!e) return false;
		e.focus();
		e.value = %s;
		e.dispatchEvent(new Event('input', {bubbles: true}));
		e.dispatchEvent(new Event('change', {bubbles: true}));
		return e.value === %s;
	})()`, js(label), js(value), js(value))))
	if err != nil || !ok {
		c.t.Fatalf("pick %q in %q: %v", value, label, err)
	}
}

func (c *consoleUI) value(label string) string {
	c.t.Helper()
	v, err := chromedp.Run(c.ctx, chromedp.Value(field(label)))
	if err != nil {
		c.t.Fatal(err)
	}
	return v
}

// shot writes docs/screenshots/name.png when UPDATE_SCREENSHOTS=1.
func (c *consoleUI) shot(name string) {
	c.t.Helper()
	if !c.shots || os.Getenv("UPDATE_SCREENSHOTS") != "1" {
		return
	}
	png, err := chromedp.Run(c.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("..", "docs", "screenshots", name+".png"), png, 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// scrollTo puts the element with this id at the top of the viewport.
func (c *consoleUI) scrollTo(id string) {
	c.t.Helper()
	if _, err := chromedp.Run(c.ctx, chromedp.Evaluate[bool](fmt.Sprintf(`(document.getElementById(%s).scrollIntoView({block: 'start'}), true)`, js(id)))); err != nil {
		c.t.Fatal(err)
	}
}

func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// signIn opens path, is sent to the login page, signs in and lands back.
func (c *consoleUI) signIn(path, user, password string) {
	c.t.Helper()
	c.do(chromedp.Navigate(c.base+path), login(user, password))
	wait, cancel := context.WithTimeout(c.ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(wait, chromedp.WaitVisible(chromedp.ID("whoami"))); err != nil {
		loc, _ := chromedp.Run(c.ctx, chromedp.Location())
		c.t.Fatalf("no console page after signing in (at %s): %v", loc, err)
	}
	if loc, _ := chromedp.Run(c.ctx, chromedp.Location()); loc != c.base+path {
		c.t.Fatalf("after login at %s, want %s", loc, c.base+path)
	}
}

var typeLabels = map[string]string{"ldap": "LDAP", "active_directory": "Active Directory", "freeipa": "FreeIPA"}

// addConnection walks the Add-connection flow up to the role rules: a
// first check with a wrong password fails and shows the directory's error
// with the form kept; the right one passes. Two groups are mapped to
// roles and a third rule is added and removed again. It returns the new
// connection's id.
func (c *consoleUI) addConnection(fx *ldaptest.Fixture, name string) string {
	c.t.Helper()
	d := fx.Dir
	u, err := url.Parse(d.URLs[0])
	if err != nil {
		c.t.Fatal(err)
	}
	c.do(chromedp.Navigate(c.base+"/admin"), chromedp.Click(link("Add connection")), chromedp.WaitVisible(field("Base DN")))
	c.do(chromedp.Click(labelled(typeLabels[d.Type])))
	c.typeIn("Name", name)
	c.typeIn("Base DN", d.BaseDN)
	c.typeIn("Server address", u.Hostname())
	c.typeIn("Port", u.Port())
	c.typeIn("Bind DN", d.BindDN)
	c.typeIn("Password", "wrong-password")
	c.typeIn("Users DN", d.UsersDN)
	c.typeIn("Groups DN", d.GroupsDN)
	c.pick("Groupname attribute", d.GroupNameAttribute)
	c.typeIn("Login domain", d.Domain)
	c.typeIn("Note", "added in the console")
	c.do(chromedp.Click(button("Next")))
	c.waitText("#error", "Connection check failed")
	if msg := strings.ToLower(c.text("#error")); !strings.Contains(msg, "credentials") {
		c.t.Fatalf("the failed check does not show the directory's error: %q", msg)
	}
	if got := c.value("Name"); got != name {
		c.t.Fatalf("after a failed check the form lost its values: Name is %q", got)
	}
	c.scrollTo("title")
	c.shot("add-connection-check")
	c.typeIn("Password", d.BindPassword.Reveal())
	c.do(chromedp.Click(button("Next")))
	c.waitText("#check-result", "Connected to")

	c.do(chromedp.WaitVisible(field("Group DN 1")))
	c.pick("Role 1", "admin")
	c.typeIn("Group DN 1", fx.Groups["admins"])
	c.do(chromedp.Click(button("Add group")))
	c.pick("Role 2", "user")
	c.typeIn("Group DN 2", fx.Groups["staff"])
	c.do(chromedp.Click(button("Add group")), chromedp.WaitVisible(field("Group DN 3")))
	c.typeIn("Group DN 3", fx.Groups["others"])
	c.do(chromedp.Click(chromedp.Search(`//button[@aria-label='Remove rule 3']`)), chromedp.WaitNotPresent(field("Group DN 3")))

	loc, err := chromedp.Run(c.ctx, chromedp.Location())
	if err != nil {
		c.t.Fatal(err)
	}
	lu, _ := url.Parse(loc)
	return lu.Query().Get("id")
}

// previewRows waits for the preview table and returns username → row
// text (role, whether on the platform, planned action).
func (c *consoleUI) previewRows() map[string][]string {
	c.t.Helper()
	c.do(chromedp.WaitVisible(chromedp.CSS("#preview-table tbody tr")))
	rows, err := chromedp.Run(c.ctx, chromedp.Evaluate[[][]string](
		`Array.from(document.querySelectorAll('#preview-table tbody tr')).map(tr => Array.from(tr.cells).map(td => td.textContent))`))
	if err != nil {
		c.t.Fatal(err)
	}
	out := map[string][]string{}
	for _, r := range rows {
		out[r[0]] = r
	}
	return out
}

// startSync clicks the button and waits for the run's counts.
func (c *consoleUI) startSync(words string) {
	c.t.Helper()
	c.do(chromedp.Click(button(words)))
	c.waitFor("the run's result", `!!document.querySelector('#sync-result')`)
	if r := c.text("#sync-result"); r != "success" {
		c.t.Fatalf("sync result %q: %s", r, c.text("#sync-output"))
	}
	if counts := c.text("#sync-counts"); !strings.Contains(counts, "create") {
		c.t.Fatalf("sync counts %q", counts)
	}
}

// TestConsoleStory walks the platform guide's story through the admin
// console against a real slapd: sign in as an admin; add a connection whose
// first check fails; map groups; choose Weekly; download the preview CSV;
// sync; read one user's change in the run; edit the note; block and
// unblock a user; migrate a legacy (config-file) directory and see its
// conflicts; delete the connection. A non-admin is refused the page.
func TestConsoleStory(t *testing.T) {
	srv := ldaptest.StartSlapd(t)
	fx, legacy := srv.NewFixture(t), srv.NewFixture(t)
	// Legacy alice's mail is not her new name, so the migration renames her.
	aliceDN := "uid=" + legacy.Users["alice"] + "," + legacy.Dir.UsersDN + "," + legacy.Dir.BaseDN
	if err := modifyMail(srv.AdminConn(t), aliceDN, "alice.legacy@corp.example"); err != nil {
		t.Fatal(err)
	}
	g := startBinaryGate(t, "directories:\n"+dirYAML("legacy", legacy, "    naming: email\n"))
	// The guide's advice: an administrator outside LDAP.
	const rootPassword = "console-root-pass"
	g.must(200, "POST", "/auth/v4/user", "admin", map[string]string{"username": "root@local", "password": rootPassword, "role": "admin"})
	// A local account already holds the name legacy alice would migrate to.
	g.must(200, "POST", "/auth/v4/user", "admin", map[string]string{"username": legacy.Login("alice"), "password": "taken-name-pass"})
	g.must(200, "POST", "/auth/v4/user", "admin", map[string]string{"username": "viewer@local", "password": "viewer-pass", "role": "user"})
	g.must(200, "POST", "/auth/v4/ldap/legacy/sync", "admin", nil)

	c := newConsoleUI(t, g.base)
	c.shots = true
	downloads := t.TempDir()
	progress := chromedp.Events(c.ctx, cdpbrowser.DownloadProgress)
	c.do(chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
			Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: downloads, EventsEnabled: ptrTo(true),
		})
		return err
	}))

	c.signIn("/admin", "root@local", rootPassword)
	dirID := c.addConnection(fx, "corp")
	if dirID == "" {
		t.Fatal("the add flow did not name the new connection's id")
	}

	// Weekly on Wednesday at 04:30: the next three runs, as the server
	// computes them, are Wednesdays at 04:30.
	c.do(chromedp.Click(labelled("Synchronize users automatically")), chromedp.Click(labelled("Weekly")))
	c.pick("Day", "wed")
	c.pick("Time", "04:30")
	c.waitFor("three next runs of weekly wed 04:30",
		`document.querySelector('#next-runs').dataset.expr === 'weekly wed 04:30' && document.querySelectorAll('#next-runs li').length === 3`)
	nexts, err := chromedp.Run(c.ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('#next-runs time')).map(t => t.dateTime)`))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range nexts {
		at, err := time.Parse(time.RFC3339, s)
		if err != nil || at.Weekday() != time.Wednesday || at.Hour() != 4 || at.Minute() != 30 {
			t.Fatalf("next runs %v", nexts)
		}
	}
	c.scrollTo("check-result")
	c.shot("add-connection")

	// The preview, downloaded as the server's CSV and shown in the page.
	c.do(chromedp.Click(button("Download list of users for synchronization")))
	var csvPath string
	for ev, err := range progress {
		if err != nil {
			t.Fatalf("download: %v", err)
		}
		if ev.State == cdpbrowser.DownloadProgressStateCompleted {
			csvPath = filepath.Join(downloads, ev.GUID)
			break
		}
		if ev.State == cdpbrowser.DownloadProgressStateCanceled {
			t.Fatal("the preview download was cancelled")
		}
	}
	f, err := os.Open(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	records, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(records) < 2 || strings.Join(records[0], ",") != "username,email,role,exists,action" {
		t.Fatalf("preview CSV: %v %v", records, err)
	}
	byUser := map[string][]string{}
	for _, r := range records[1:] {
		byUser[r[0]] = r
	}
	if a := byUser[fx.Login("alice")]; a == nil || a[2] != "admin" || a[3] != "false" || a[4] != "create" {
		t.Fatalf("alice in the CSV: %v (all %v)", a, records)
	}
	if b := byUser[fx.Login("bob")]; b == nil || b[2] != "user" || b[4] != "create" {
		t.Fatalf("bob in the CSV: %v", b)
	}
	if rows := c.previewRows(); rows[fx.Login("alice")] == nil || rows[fx.Login("alice")][2] != "admin" {
		t.Fatalf("preview table: %v", rows)
	}
	// The weekly schedule and the rules were saved with it.
	d := g.must(200, "GET", "/auth/v4/ldap/"+dirID, "admin", nil)
	if d["schedule"] != "weekly wed 04:30" || fmt.Sprint(d["role_mapping"]) != fmt.Sprint(map[string]any{
		"admin": []any{fx.Groups["admins"]}, "user": []any{fx.Groups["staff"]}}) {
		t.Fatalf("saved connection: schedule %v, rules %v", d["schedule"], d["role_mapping"])
	}

	c.startSync("Start synchronization")

	// The run's changes: alice was created, and why.
	c.do(chromedp.Click(link("Open this run's changes")), chromedp.WaitVisible(field("Filter changes")))
	c.do(chromedp.WaitVisible(chromedp.CSS("#changes tbody tr")))
	c.typeIn("Filter changes", fx.Users["alice"])
	alice := fmt.Sprintf(`#changes tr[data-user=%s]`, js(fx.Login("alice")))
	c.waitText(alice, "create")
	c.shot("run-changes")

	// The connections table: users by state, last result; the note edited
	// from the row menu.
	c.do(chromedp.Navigate(c.base + "/admin"))
	row := fmt.Sprintf(`#connections tr[data-id="%s"]`, dirID)
	c.waitText(row+" td.result", "success")
	c.waitText(row+" td.users", "Active")
	// With the keyboard only: Enter opens the row menu and presses Note.
	c.do(chromedp.Focus(chromedp.Search(`//summary[@aria-label='Actions for corp']`)), chromedp.KeyEvent("\r"),
		chromedp.WaitVisible(chromedp.Search(`//tr[@data-id='`+dirID+`']//button[normalize-space()='Note']`)))
	c.shot("connections")
	c.do(chromedp.Focus(chromedp.Search(`//tr[@data-id='`+dirID+`']//button[normalize-space()='Note']`)), chromedp.KeyEvent("\r"))
	c.do(chromedp.WaitVisible(field("Note")))
	c.typeIn("Note", "main office")
	c.do(chromedp.Focus(button("Save note")), chromedp.KeyEvent("\r"))
	c.waitText(row+" td.note", "main office")

	// Users: find bob, block him, unblock him.
	bob := fx.Login("bob")
	c.do(chromedp.Click(link("Users")), chromedp.WaitVisible(field("Search")))
	c.typeIn("Search", fx.Users["bob"])
	bobRow := fmt.Sprintf(`#users tr[data-user=%s]`, js(bob))
	c.waitFor("bob alone in the users table",
		fmt.Sprintf(`document.querySelectorAll('#users tbody tr').length === 1 && !!document.querySelector(%s)`, js(bobRow)))
	c.do(chromedp.Click(button("Block")))
	c.waitText(bobRow+" td.state", "Blocked (admin)")
	if u := users(g.must(200, "GET", "/auth/v4/user?state=blocked", "admin", nil))[bob]; u == nil {
		t.Fatal("bob is not blocked in the store")
	}
	c.pick("State", "blocked")
	c.waitFor("the state filter", fmt.Sprintf(`document.querySelectorAll('#users tbody tr').length === 1 && !!document.querySelector(%s)`, js(bobRow)))
	c.do(chromedp.Click(button("Unblock")))
	c.waitFor("bob gone from the blocked users", `document.querySelectorAll('#users tbody tr').length === 0`)
	c.pick("State", "")
	c.waitText(bobRow+" td.state", "Active")

	// A local user's password, set from the table.
	holder := legacy.Login("alice")
	c.typeIn("Search", legacy.Users["alice"])
	c.waitFor("the local holder of legacy alice's new name",
		fmt.Sprintf(`!!document.querySelector(%s)`, js(fmt.Sprintf(`#users tr[data-user=%s]`, js(holder)))))
	c.do(chromedp.Click(chromedp.Search(`//button[@aria-label='Set password of `+holder+`']`)), chromedp.WaitVisible(field("New password")))
	c.typeIn("New password", "changed-in-console")
	c.do(chromedp.Click(chromedp.Search(`//dialog//button[normalize-space()='Set password']`)))
	c.waitText("#status", "Password of "+holder+" changed")
	g.login(holder, "changed-in-console")

	// The log level, changed at run time.
	c.do(chromedp.Click(link("Log level")), chromedp.WaitVisible(field("Log level")))
	c.pick("Log level", "debug")
	c.do(chromedp.Click(button("Apply")))
	c.waitText("#status", "Log level is now debug")

	// The legacy directory from the config file: read-only here, and its
	// migration is refused with the conflicting name listed.
	legacyID := ""
	for _, it := range g.must(200, "GET", "/auth/v4/ldap", "admin", nil)["list"].([]any) {
		if m := it.(map[string]any); m["name"] == "legacy" {
			legacyID = id(m["id"])
		}
	}
	c.do(chromedp.Navigate(c.base+"/admin/connections/"+legacyID), chromedp.WaitVisible(chromedp.ID("managed-note")))
	if !strings.Contains(c.text("#managed-note"), "read-only") {
		t.Fatalf("config-file connection note: %q", c.text("#managed-note"))
	}
	if disabled, _ := chromedp.Run(c.ctx, chromedp.Evaluate[bool](`document.querySelector('#f-base-dn').matches(':disabled')`)); !disabled {
		t.Fatal("a config-file connection's settings are editable")
	}
	c.do(chromedp.Click(button("Migrate to username@domain")))
	c.confirm("Migrate")
	c.waitText("#migrate-conflicts", legacy.Login("alice"))

	// Delete the connection from its row menu, confirmed: its users are blocked.
	c.do(chromedp.Navigate(c.base+"/admin"), chromedp.WaitVisible(chromedp.CSS(row)))
	c.do(chromedp.Click(chromedp.Search(`//summary[@aria-label='Actions for corp']`)),
		chromedp.Click(chromedp.Search(`//tr[@data-id='`+dirID+`']//button[normalize-space()='Delete']`)))
	c.confirm("Delete")
	c.waitText("#status", "users blocked")
	blocked := users(g.must(200, "GET", "/auth/v4/user?state=blocked", "admin", nil))
	for _, n := range []string{"alice", "bob"} {
		if u := blocked[fx.Login(n)]; u == nil || u["block_reason"] != "directory_removed" {
			t.Fatalf("%s after the delete: %v", n, u)
		}
	}

	// The same page as a non-admin: 403; without a session: the login page.
	viewerToken := g.login("viewer@local", "viewer-pass")
	for _, tc := range []struct {
		token string
		want  int
	}{{viewerToken, http.StatusForbidden}, {"", http.StatusFound}} {
		req, _ := http.NewRequest("GET", g.base+"/admin/users", nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want || (tc.want == http.StatusFound && resp.Header.Get("Location") != "/login?rd=%2Fadmin%2Fusers") {
			t.Fatalf("GET /admin/users with token %t: %d %s", tc.token != "", resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	c.do(chromedp.Click(button("Sign out")), chromedp.WaitVisible(chromedp.ID("username")))
	c.signIn("/admin", "viewer@local", "viewer-pass")
	if s := c.text("main"); !strings.Contains(s, "needs the admin role") {
		t.Fatalf("non-admin page: %q", s)
	}
}

func ptrTo[T any](v T) *T { return &v }

// startBinaryGate is startGate with the real binary (`ldapgate serve`), for
// the browser tests: the console is driven the way an operator meets it.
func startBinaryGate(t *testing.T, extraYAML string) *gate {
	t.Helper()
	addr, path := gateConfig(t, extraYAML)
	start(t, opsBinary(t), addr, "serve", "-config", path)
	return &gate{t: t, base: "http://" + addr}
}

// TestConsoleFlavors: the add flow (check, map, preview, sync) works the
// same on Samba AD and 389-ds as on slapd.
func TestConsoleFlavors(t *testing.T) {
	for _, f := range []struct {
		name string
		get  func(testing.TB) *ldaptest.Server
	}{{"samba", ldaptest.SharedSamba}, {"389ds", ldaptest.Shared389}} {
		t.Run(f.name, func(t *testing.T) {
			fx := f.get(t).NewFixture(t)
			g := startBinaryGate(t, "")
			g.must(200, "POST", "/auth/v4/user", "admin", map[string]string{"username": "root@local", "password": "console-root-pass", "role": "admin"})
			c := newConsoleUI(t, g.base)
			c.signIn("/admin", "root@local", "console-root-pass")
			dirID := c.addConnection(fx, "corp-"+f.name)
			c.do(chromedp.Click(button("Download list of users for synchronization")))
			rows := c.previewRows()
			if a := rows[fx.Login("alice")]; a == nil || a[2] != "admin" || a[4] != "create" {
				t.Fatalf("alice in the preview: %v (all %v)", a, rows)
			}
			if b := rows[fx.Login("bob")]; b == nil || b[2] != "user" {
				t.Fatalf("bob in the preview: %v", b)
			}
			c.startSync("Start synchronization")
			byName := users(g.must(200, "GET", "/auth/v4/user?directory="+dirID, "admin", nil))
			if a := byName[fx.Login("alice")]; a == nil || a["role"] != "admin" || a["state"] != "active" {
				t.Fatalf("alice after the console's sync: %v", a)
			}
		})
	}
}

// TestDemoOpensConsole: in `ldapgate demo` (the real binary) alice, an
// admin, lands on the admin console; bob lands on the proxied platform page.
func TestDemoOpensConsole(t *testing.T) {
	bin := opsBinary(t)
	addr := freePort(t)
	start(t, bin, addr, "demo", "-listen", addr)
	base := "http://" + addr
	c := newConsoleUI(t, base)

	c.do(chromedp.Navigate(base+"/"), login("alice@example.org", "demo"), chromedp.WaitVisible(chromedp.ID("whoami")))
	if loc := location(t, c.ctx); loc != base+"/admin" {
		t.Fatalf("alice landed on %s, want the console", loc)
	}
	c.waitText("#connections td.result", "success") // the demo directory, synced at start
	if who := c.text("#whoami"); who != "alice@example.org" {
		t.Fatalf("console signed in as %q", who)
	}

	c.do(chromedp.Click(button("Sign out")), chromedp.WaitVisible(chromedp.ID("username")))
	c.do(chromedp.Navigate(base+"/"), login("bob@example.org", "demo"))
	if user := text(t, c.ctx, "user"); user != "bob@example.org" || location(t, c.ctx) != base+"/" {
		t.Fatalf("bob sees user %q at %s, want the platform page", user, location(t, c.ctx))
	}
}

// TestConsoleRefusedSync: a run the safety check refuses says why and
// offers a forced run, which happens only once confirmed.
func TestConsoleRefusedSync(t *testing.T) {
	srv := ldaptest.StartSlapd(t)
	fx := srv.NewFixture(t)
	g := startBinaryGate(t, "")
	g.must(200, "POST", "/auth/v4/user", "admin", map[string]string{"username": "root@local", "password": "console-root-pass", "role": "admin"})
	body := directoryBody(fx, "corp", "username_at_domain", fx.Dir.BindPassword.Reveal())
	// Live changes would block alice as she leaves (and then pause): this
	// story is the full sync's refusal.
	body["live"] = false
	created := g.must(200, "POST", "/auth/v4/ldap", "admin", body)
	dirID := id(created["id"])
	g.must(200, "POST", "/auth/v4/ldap/"+dirID+"/sync", "admin", nil)
	// alice and bob leave: blocking 2 of 5 active users is past the 20% bound.
	fx.DeleteUser(t, "alice")
	fx.DeleteUser(t, "bob")

	c := newConsoleUI(t, g.base)
	c.signIn("/admin/connections/"+dirID, "root@local", "console-root-pass")
	// The connection's page: preview, dry run, an edit saved.
	c.do(chromedp.Click(button("Preview")))
	if rows := c.previewRows(); rows[fx.Login("dave")] == nil || rows[fx.Login("alice")] != nil && rows[fx.Login("alice")][4] == "create" {
		t.Fatalf("preview after alice left: %v", rows)
	}
	c.do(chromedp.Click(button("Dry run")))
	c.waitText("#sync-output", "Dry run finished")
	c.typeIn("Note", "edited on its page")
	c.do(chromedp.Click(button("Save")))
	c.waitText("#status", "Connection saved.")
	if d := g.must(200, "GET", "/auth/v4/ldap/"+dirID, "admin", nil); d["note"] != "edited on its page" {
		t.Fatalf("note after Save: %v", d["note"])
	}
	c.do(chromedp.Click(button("Synchronize")))
	c.waitText("#sync-result", "refused")
	if help := c.text("#refused-help"); !strings.Contains(help, "safety check") {
		t.Fatalf("refused run explained as %q", help)
	}
	if u := users(g.must(200, "GET", "/auth/v4/user?state=active", "admin", nil))[fx.Login("alice")]; u == nil {
		t.Fatal("a refused run blocked alice")
	}
	// Cancelling the confirmation runs nothing.
	c.do(chromedp.Click(button("Force synchronization…")))
	c.confirm("Cancel")
	if runs := g.must(200, "GET", "/auth/v4/ldap/"+dirID+"/runs", "admin", nil); runs["size"].(float64) != 3 {
		t.Fatalf("a cancelled confirmation started a run: %v", runs)
	}
	c.do(chromedp.Click(button("Force synchronization…")))
	c.confirm("Force synchronization")
	c.waitText("#sync-result", "success")
	if u := users(g.must(200, "GET", "/auth/v4/user?state=blocked", "admin", nil))[fx.Login("alice")]; u == nil || u["block_reason"] != "deleted_in_ldap" {
		t.Fatalf("alice after the forced run: %v", u)
	}
}
