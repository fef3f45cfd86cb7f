package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// localServerURL is the PostgreSQL server that developers' machines and CI run.
const localServerURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// postgresServer is a reachable PostgreSQL server: its admin URL (database
// "postgres") and, when this process started it, how to stop it.
type postgresServer struct {
	adminURL string
	private  *privatePostgres
}

// findOrStartPostgres returns the local server on 127.0.0.1:5432 when it
// answers, else a private server started from the installed binaries under
// stateDir (installing them with apt-get first when root on Debian).
func findOrStartPostgres(ctx context.Context, stateDir string, port int, log io.Writer) (postgresServer, error) {
	if ping(ctx, localServerURL) == nil {
		return postgresServer{adminURL: localServerURL}, nil
	}
	fmt.Fprintln(log, "devstack: no PostgreSQL on 127.0.0.1:5432; starting a private one")
	p, err := newPrivatePostgres(ctx, stateDir, port, log)
	if err != nil {
		return postgresServer{}, err
	}
	if err := p.start(ctx); err != nil {
		return postgresServer{}, err
	}
	return postgresServer{adminURL: p.url(), private: p}, nil
}

func ping(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx)
}

// privatePostgres is a server in a folder of the repository.
type privatePostgres struct {
	binDir  string
	dataDir string
	sockDir string
	logFile string
	port    int
	runAs   string // a non-root user to run as, when we are root
	log     io.Writer
}

func newPrivatePostgres(ctx context.Context, stateDir string, port int, log io.Writer) (*privatePostgres, error) {
	bin, err := postgresBinDir()
	if errors.Is(err, errNoPostgres) && os.Geteuid() == 0 {
		if _, lookErr := exec.LookPath("apt-get"); lookErr == nil {
			fmt.Fprintln(log, "devstack: installing PostgreSQL with apt-get")
			if err := runLogged(ctx, log, "apt-get", "update"); err != nil {
				return nil, fmt.Errorf("apt-get update: %w", err)
			}
			if err := runLogged(ctx, log, "apt-get", "install", "-y", "--no-install-recommends", "postgresql"); err != nil {
				return nil, fmt.Errorf("apt-get install postgresql: %w", err)
			}
			bin, err = postgresBinDir()
		}
	}
	if err != nil {
		return nil, err
	}
	p := &privatePostgres{
		binDir:  bin,
		dataDir: filepath.Join(stateDir, "postgres", "data"),
		sockDir: filepath.Join(stateDir, "postgres"),
		logFile: filepath.Join(stateDir, "postgres", "server.log"),
		port:    port,
		log:     log,
	}
	if os.Geteuid() == 0 {
		// initdb and postgres refuse to run as root.
		if _, err := user.Lookup("postgres"); err != nil {
			return nil, errors.New("running as root and no 'postgres' user exists to run a private PostgreSQL server")
		}
		p.runAs = "postgres"
	}
	return p, nil
}

var errNoPostgres = errors.New("no PostgreSQL server binaries found under /usr/lib/postgresql (install the postgresql package, or set DATABASE_URL)")

func postgresBinDir() (string, error) {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		if p, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p), nil
		}
		return "", errNoPostgres
	}
	sort.Strings(matches) // the newest major version sorts last for 1x versions
	return filepath.Dir(matches[len(matches)-1]), nil
}

func (p *privatePostgres) url() string {
	return "postgres://postgres@127.0.0.1:" + strconv.Itoa(p.port) + "/postgres?sslmode=disable"
}

func (p *privatePostgres) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	bin := filepath.Join(p.binDir, name)
	if p.runAs != "" {
		return exec.CommandContext(ctx, "runuser", append([]string{"-u", p.runAs, "--", bin}, args...)...)
	}
	return exec.CommandContext(ctx, bin, args...)
}

func (p *privatePostgres) start(ctx context.Context) error {
	if err := os.MkdirAll(p.sockDir, 0o755); err != nil {
		return err
	}
	if p.runAs != "" {
		if err := runLogged(ctx, p.log, "chown", "-R", p.runAs, p.sockDir); err != nil {
			return err
		}
	}
	if _, err := os.Stat(filepath.Join(p.dataDir, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		fmt.Fprintln(p.log, "devstack: initdb", p.dataDir)
		cmd := p.command(ctx, "initdb", "-D", p.dataDir, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
		cmd.Stdout, cmd.Stderr = p.log, p.log
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("initdb: %w", err)
		}
	}
	if ping(ctx, p.url()) == nil {
		return nil // already running from an earlier start
	}
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=300", p.port, p.sockDir)
	cmd := p.command(ctx, "pg_ctl", "-D", p.dataDir, "-l", p.logFile, "-o", opts, "-w", "-t", "60", "start")
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pg_ctl start (see %s): %w", p.logFile, err)
	}
	return ping(ctx, p.url())
}

func (p *privatePostgres) stop(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(p.dataDir, "postmaster.pid")); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	cmd := p.command(ctx, "pg_ctl", "-D", p.dataDir, "-m", "fast", "-w", "stop")
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pg_ctl stop: %w", err)
	}
	return nil
}

func runLogged(ctx context.Context, log io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	return cmd.Run()
}
