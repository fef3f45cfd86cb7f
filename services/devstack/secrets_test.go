package main_test

// Issue 16's "secrets never appear in logs" over a whole run: the
// end-to-end test gives the stack secrets of its own (secretsNeverLogged's
// callers), uses each, and then searches every line that every process
// of the run wrote.

import (
	"crypto/rand"
	"encoding/hex"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// loggedServices are the processes of a `devstack run` whose log files the
// search must find (financectl is the reconciler, financectl reconcile
// --watch).
var loggedServices = []string{"devkafka", "processor-sim", "outbox-relay", "dispatcher", "status-consumer",
	"gateway", "webhook-delivery", "financectl"}

// secretsNeverLogged fails t for each line of the run's logs that holds one
// of secrets (by what it is). The logs are every log file under
// stateDir/logs, where the supervisor writes each child's output (its
// restarts included), and devstackOut, devstack's own output: its lines,
// the services' lines again, and the output of the one-shot financectl
// commands it runs (createdb, migrate, seed, topics), which goes there
// only.
func secretsNeverLogged(t *testing.T, stateDir, devstackOut string, secrets map[string]string) {
	t.Helper()
	for what, s := range secrets {
		if len(s) < 8 {
			t.Fatalf("the %s %q is too short to search the logs for", what, s)
		}
	}
	files, err := filepath.Glob(filepath.Join(stateDir, "logs", "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	logs := map[string]string{"devstack's output": devstackOut}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		logs[filepath.Base(f)] = string(b)
	}
	// A log that is missing or empty would pass the search without proving
	// anything.
	for _, s := range loggedServices {
		if strings.TrimSpace(logs[s+".log"]) == "" {
			t.Errorf("%s/logs/%s.log is missing or empty: the search for secrets would not cover it", stateDir, s)
		}
	}
	if !strings.Contains(logs["gateway.log"], `"/v1/payments"`) {
		t.Errorf("the gateway's log has no line of a payment's request: the search for secrets would prove little")
	}

	lines := 0
	for _, name := range slices.Sorted(maps.Keys(logs)) {
		split := strings.Split(logs[name], "\n")
		lines += len(split)
		for _, what := range slices.Sorted(maps.Keys(secrets)) {
			var found []int // line numbers
			for i, line := range split {
				if strings.Contains(line, secrets[what]) {
					found = append(found, i+1)
				}
			}
			if len(found) > 0 {
				t.Errorf("%s has the %s on %d lines (%v), the first: %s", name, what, len(found), found, split[found[0]-1])
			}
		}
	}
	t.Logf("%d lines of %d logs searched for %d secrets", lines, len(logs), len(secrets))
}

// randomHex returns n random bytes in hex: a secret no log holds by chance.
func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// withPassword returns dbURL with password as its password, and the
// password; a URL that has one keeps it. PostgreSQL's trust
// authentication, as on the test server, ignores it.
func withPassword(t *testing.T, dbURL, password string) (string, string) {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil || u.User == nil {
		t.Fatalf("DATABASE_URL %q: want a postgres:// URL with a user", dbURL)
	}
	if p, ok := u.User.Password(); ok {
		return dbURL, p
	}
	u.User = url.UserPassword(u.User.Username(), password)
	return u.String(), password
}

// signature is a JWT's signature, its last part: what a log that cut the
// header and payload off a token would still give away.
func signature(token string) string {
	return token[strings.LastIndex(token, ".")+1:]
}
