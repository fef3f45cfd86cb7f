//go:build browser

// The operator console in a real browser: headless Chromium (Debian's
// chromium package) driven by chromedp. make test-browser runs it (make
// test does when chromium is installed, or installable as root):
//
//	go test -tags browser -run TestConsoleInBrowser -artifacts -outputdir OUT ./internal/httpapi/
//
// keeps the screenshots under OUT; without -artifacts they go to a
// temporary directory, removed after the test.

package httpapi_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browser starts headless Chromium for t, or skips t when there is none.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := os.Getenv("CHROMIUM")
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path != "" {
			break
		}
		path, _ = exec.LookPath(name)
	}
	if path == "" {
		t.Skip("no chromium on PATH (apt-get install chromium, or set CHROMIUM): make test-browser installs it when root")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // root in a container has no user namespace for the sandbox
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	// The first action starts the browser, which lives as long as ctx.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	return ctx
}

// shot saves a full-page screenshot as name.png under the test's artifacts.
func shot(t *testing.T, name string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		png, err := chromedp.FullScreenshot(100)(ctx, tg) // 100: PNG; below, JPEG
		if err != nil {
			return err
		}
		path := filepath.Join(t.ArtifactDir(), name+".png")
		t.Logf("screenshot %s", path)
		return os.WriteFile(path, png, 0o644)
	})
}

// step logs where the browser is, so a timeout names the step it hung in.
func step(t *testing.T, name string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(context.Context, *chromedp.Target) error {
		t.Logf("step: %s", name)
		return nil
	})
}

// TestConsoleInBrowser signs in, looks at the overview, browses the dead
// letters, replays one, checks the database, and submits the same replay
// again, which is refused and publishes nothing.
func TestConsoleInBrowser(t *testing.T) {
	ce := newConsoleEnv(t, consoleOptions{})
	ctx := browser(t)
	ce.seedUnknown()
	for i := range 20 {
		ce.exec(fmt.Sprintf(`INSERT INTO payments (id, user_id, merchant_id, amount, status, idempotency_key, request_hash)
			VALUES (%d, 20, 4593, -1, 'accepted', 'acc-%[1]d', 'h')`, 400001+i))
	}
	ce.exec(`INSERT INTO payment_transitions (payment_id, user_id, user_seq, from_status, to_status, actor)
		SELECT id, 20, 10 + id - 400001, '', 'accepted', 'gateway' FROM payments WHERE id > 400000`)
	l := ce.letters[0]
	letterURL := fmt.Sprintf("%s/console/dlq/%s/%d/%d", ce.srv.URL, l.Topic, l.Partition, l.Offset)

	var backlog, notice, replayed, refusal string
	read := func(sel string, into *string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			v, err := chromedp.Text(sel)(ctx, tg)
			*into = strings.TrimSpace(v)
			return err
		})
	}
	run, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	err := chromedp.Do(run,
		step(t, "sign in"),
		chromedp.Navigate(ce.srv.URL+"/console"),
		chromedp.WaitVisible(`a[href="/console/login"]`), // 401: sign in first
		chromedp.Navigate(ce.srv.URL+"/console/login"),
		chromedp.WaitVisible(`#token`),
		chromedp.SetValue(`#token`, ce.admin),
		shot(t, "console-login"),
		chromedp.Click(`#signin`),
		chromedp.WaitVisible(`#backlog`),
		read(`#backlog`, &backlog),
		// htmx polls the numbers every 2 s; the chart shows from the second sample.
		chromedp.WaitVisible(`#stats svg`),
		shot(t, "console-overview"),

		step(t, "filter the dead letters"),
		chromedp.Navigate(ce.srv.URL+"/console/dlq"),
		chromedp.WaitVisible(`#dlq-filter`),
		chromedp.SetValue(`select[name="topic"]`, "payments.outcomes"),
		chromedp.Click(`#filter`),
		// The filtered page, not the unfiltered one still showing: only a
		// list filtered by topic has the replay form. Clicking a letter on
		// the old page while the new one loads would lose the click.
		chromedp.WaitVisible(`#letters ~ form.replay`),
		chromedp.WaitVisible(`#letters a[href*="/console/dlq/"]`),
		shot(t, "console-dlq"),
		step(t, "open a letter and replay it"),
		chromedp.Click(`#letters a[href="`+strings.TrimPrefix(letterURL, ce.srv.URL)+`"]`),
		chromedp.WaitVisible(`#replay`),
		shot(t, "console-letter"),
		chromedp.Click(`#replay`),
		chromedp.WaitVisible(`#notice`),
		read(`#notice`, &notice),
		read(`#replay-records .outcome`, &replayed),
		shot(t, "console-replayed"),

		step(t, "replay it again"),
		// The same replay again, from the letter's page.
		chromedp.Navigate(letterURL),
		chromedp.WaitVisible(`#replay`),
		chromedp.Click(`#replay`),
		chromedp.WaitVisible(`#error`),
		read(`#error`, &refusal),
		shot(t, "console-replay-refused"),
	)
	if err != nil {
		t.Fatal(err)
	}
	if backlog != "20" {
		t.Errorf("overview backlog %q, want 20", backlog)
	}
	if !strings.Contains(notice, "1 of 1 replayed") || replayed != "replayed" {
		t.Errorf("replay page: notice %q, outcome %q; want 1 of 1 replayed", notice, replayed)
	}
	if !strings.Contains(refusal, "nothing was replayed") || !strings.Contains(refusal, "replayed at") {
		t.Errorf("second replay: %q, want a refusal saying when it was replayed", refusal)
	}

	// The database: the letter replayed once, by the operator, audited.
	if n := ce.count(`SELECT count(*) FROM dlq_replayed_records WHERE dlq_topic = $1 AND dlq_partition = $2 AND dlq_offset = $3 AND outcome = 'replayed'`,
		l.Topic, l.Partition, l.Offset); n != 1 {
		t.Errorf("the letter is recorded as replayed %d times, want 1", n)
	}
	if n := ce.count(`SELECT count(*) FROM dlq_replays WHERE actor = 'console:admin:1' AND replayed = 1 AND finished_at IS NOT NULL`); n != 1 {
		t.Errorf("%d finished replay runs by console:admin:1 that replayed one letter, want 1", n)
	}
	if n := ce.outcomes(); n != 1 {
		t.Errorf("payments.outcomes holds %d records, want the one replayed", n)
	}
	var statuses []int
	for _, r := range ce.audit() {
		if r.Action == "POST /console/dlq/replay" {
			statuses = append(statuses, r.Status)
		}
	}
	if fmt.Sprint(statuses) != "[200 409]" {
		t.Errorf("audited replay posts: %v, want [200 409]", statuses)
	}
}
