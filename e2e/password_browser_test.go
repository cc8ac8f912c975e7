package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ldapgate/ldapgate/internal/ldaptest"
)

// changeForm fills and submits the password change form.
func changeForm(oldPw, newPw, repeat string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		chromedp.WaitVisible(chromedp.ID("new_password2")),
		chromedp.SendKeys(chromedp.ID("old_password"), oldPw),
		chromedp.SendKeys(chromedp.ID("new_password"), newPw),
		chromedp.SendKeys(chromedp.ID("new_password2"), repeat),
		chromedp.Click(chromedp.ID("submit")),
	)
}

// errorSays waits until the page's error message contains want (a form
// submission replaces the page, so the previous message may still be
// there for a moment) and fails the test with what it says otherwise.
func errorSays(t *testing.T, ctx context.Context, want string) {
	t.Helper()
	js := fmt.Sprintf(`(() => { const e = document.getElementById('error'); return !!e && e.textContent.includes(%q); })()`, want)
	deadline := time.Now().Add(30 * time.Second)
	for {
		// An evaluation cut short by the navigation is retried on the new
		// page.
		if ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js)); err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			got, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.getElementById('error') || {}).textContent || ''`))
			t.Fatalf("the page's error never said %q (it says %q)", want, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPasswordChangeInBrowser (SPEC §13): a user whose password an
// administrator reset (ppolicy pwdReset) signs in on /login, is shown the
// change form, sees the directory's own reason when its policy refuses a
// too-short password, and lands on the page they asked for, logged in,
// once a good one is accepted. The sign-in page offers the change to
// anyone too.
func TestPasswordChangeInBrowser(t *testing.T) {
	bin := opsBinary(t)
	srv := ldaptest.StartSlapd(t)
	fx := srv.NewFixture(t)
	fx.AddUser(t, "reset", "staff")
	fx.SetMustChangePassword(t, "reset")
	addr := freePort(t)
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte(twoDirectoryConfig(t, addr, fx)), 0o600); err != nil {
		t.Fatal(err)
	}
	start(t, bin, addr, "serve", "-config", cfg)
	ctx := browser(t)
	base := "http://" + addr
	user := fx.Login("reset")

	// Any user may open the change form from the sign-in page.
	do(t, ctx, chromedp.Navigate(base+"/login"), chromedp.WaitVisible(chromedp.ID("change")),
		chromedp.Click(chromedp.ID("change")), chromedp.WaitVisible(chromedp.ID("new_password2")))

	// The right password, which must be changed: the change form, with
	// the name kept.
	do(t, ctx, chromedp.Navigate(base+"/login?rd=/after"), login(user, ldaptest.Password))
	errorSays(t, ctx, "must be changed")
	do(t, ctx, chromedp.WaitVisible(chromedp.ID("old_password")))
	name, err := chromedp.Run(ctx, chromedp.Value(chromedp.ID("username")))
	if err != nil || name != user {
		t.Fatalf("change form's username = %q, want %q", name, user)
	}

	// The two new passwords differ: refused on the page, nothing asked.
	do(t, ctx, changeForm(ldaptest.Password, "Changed-Pass-2", "Changed-Pass-3"))
	errorSays(t, ctx, "do not match")

	// Too short for the directory's policy: its reason, in words.
	do(t, ctx, changeForm(ldaptest.Password, "Short-1", "Short-1"))
	errorSays(t, ctx, "too short")

	// A good one: changed, logged in, on the page asked for.
	do(t, ctx, changeForm(ldaptest.Password, "Changed-Pass-2", "Changed-Pass-2"))
	if got := text(t, ctx, "user"); got != user {
		t.Fatalf("upstream saw user %q, want %s", got, user)
	}
	if got := location(t, ctx); got != base+"/after" {
		t.Fatalf("landed on %q, want %s/after", got, base)
	}

	// The new password is the password now (the form checks it whatever
	// cookie the browser holds).
	do(t, ctx, chromedp.Navigate(base+"/login?rd=/again"), login(user, "Changed-Pass-2"))
	if got, path := text(t, ctx, "user"), text(t, ctx, "path"); got != user || path != "/again" {
		t.Fatalf("login with the new password: upstream saw %q at %q", got, path)
	}
}
