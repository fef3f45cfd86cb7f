package pgtest

import (
	"context"
	"fmt"
	"net"
	"os"
	osexec "os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/finsvc/finance/pkg/freeport"
)

// Replicated is a private PostgreSQL primary and a hot standby fed from it
// by streaming replication, both started from the installed server
// binaries in a temporary folder.
type Replicated struct {
	// PrimaryURL and ReplicaURL are admin URLs (database postgres) of the
	// two servers.
	PrimaryURL, ReplicaURL string
}

// StartReplicated starts a private primary (initdb, wal_level=replica) on
// a free port, clones it with pg_basebackup -R into a standby on another
// free port, and stops both and removes their folder when tb ends. It
// skips tb, saying why, only when no PostgreSQL server binaries are
// installed. Both servers are small (max_connections 40, fsync off): they
// hold one test's data.
func StartReplicated(tb testing.TB) Replicated {
	tb.Helper()
	bin, err := serverBinDir()
	if err != nil {
		tb.Skipf("pgtest: no streaming-replication test: %v", err)
	}
	var runAs string
	if os.Geteuid() == 0 { // initdb and postgres refuse to run as root
		if _, err := user.Lookup("postgres"); err != nil {
			tb.Skipf("pgtest: no streaming-replication test: running as root and no 'postgres' user to run the servers as")
		}
		runAs = "postgres"
	}
	dir, err := os.MkdirTemp("", "pgtest-replica-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	if runAs != "" {
		if out, err := osexec.Command("chown", runAs, dir).CombinedOutput(); err != nil {
			tb.Fatalf("pgtest: chown %s: %v: %s", dir, err, out)
		}
	}
	run := func(name string, args ...string) {
		tb.Helper()
		path := filepath.Join(bin, name)
		cmd := osexec.Command(path, args...)
		if runAs != "" {
			cmd = osexec.Command("runuser", append([]string{"-u", runAs, "--", path}, args...)...)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			tb.Fatalf("pgtest: %s %v: %v\n%s", name, args, err, out)
		}
	}
	primary, replica := filepath.Join(dir, "primary"), filepath.Join(dir, "replica")
	pPort, rPort := freePort(tb), freePort(tb)
	opts := func(port int) string {
		return fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=40 -c shared_buffers=16MB "+
			"-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c wal_level=replica -c max_wal_senders=4 "+
			"-c hot_standby=on -c wal_receiver_status_interval=1s", port, dir)
	}
	stop := func(data string) {
		path := filepath.Join(bin, "pg_ctl")
		args := []string{"-D", data, "-m", "immediate", "-w", "stop"}
		cmd := osexec.Command(path, args...)
		if runAs != "" {
			cmd = osexec.Command("runuser", append([]string{"-u", runAs, "--", path}, args...)...)
		}
		_ = cmd.Run() // not running is fine
	}

	run("initdb", "-D", primary, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
	tb.Cleanup(func() { stop(primary) })
	run("pg_ctl", "-D", primary, "-l", filepath.Join(dir, "primary.log"), "-o", opts(pPort), "-w", "-t", "60", "start")
	r := Replicated{
		PrimaryURL: "postgres://postgres@127.0.0.1:" + strconv.Itoa(pPort) + "/postgres?sslmode=disable",
		ReplicaURL: "postgres://postgres@127.0.0.1:" + strconv.Itoa(rPort) + "/postgres?sslmode=disable",
	}
	// initdb -A trust lets local replication connections in (pg_hba.conf).
	run("pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(pPort), "-U", "postgres", "-D", replica,
		"-R", "-X", "stream", "-c", "fast", "--no-sync")
	tb.Cleanup(func() { stop(replica) })
	run("pg_ctl", "-D", replica, "-l", filepath.Join(dir, "replica.log"), "-o", opts(rPort), "-w", "-t", "60", "start")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		var inRecovery bool
		conn, err := pgx.Connect(ctx, r.ReplicaURL)
		if err == nil {
			err = conn.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&inRecovery)
			conn.Close(ctx)
		}
		if err == nil && inRecovery {
			return r
		}
		if err == nil {
			tb.Fatalf("pgtest: the replica on port %d is not a standby", rPort)
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("pgtest: the replica did not answer: %v (see %s)", err, filepath.Join(dir, "replica.log"))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// serverBinDir finds the installed PostgreSQL server binaries, the newest
// major version first, as devstack does.
func serverBinDir() (string, error) {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_basebackup")
	if len(matches) > 0 {
		sort.Strings(matches)
		return filepath.Dir(matches[len(matches)-1]), nil
	}
	for _, name := range []string{"initdb", "pg_ctl", "pg_basebackup"} {
		if _, err := osexec.LookPath(name); err != nil {
			return "", fmt.Errorf("%s not found under /usr/lib/postgresql/*/bin or on PATH (install the postgresql package)", name)
		}
	}
	p, _ := osexec.LookPath("initdb")
	return filepath.Dir(p), nil
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago,
// below the kernel's ephemeral ports (see package freeport).
func freePort(tb testing.TB) int {
	tb.Helper()
	a, err := freeport.Addr()
	if err != nil {
		tb.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(a)
	p, err := strconv.Atoi(port)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}
