package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/finsvc/finance/pkg/auth"
)

// DemoUser is the seeded user whose token and curl line are printed.
const DemoUser = 3456

// Main runs one devstack subcommand.
func Main(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "run"
	if len(args) > 0 {
		cmd = args[0]
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	switch cmd {
	case "run":
		return run(ctx, cfg, stdout)
	case "ensure-postgres":
		srv, err := findOrStartPostgres(ctx, cfg.StateDir, cfg.PrivatePGPort, stderr)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, srv.adminURL)
		return nil
	case "stop-postgres":
		p, err := newPrivatePostgres(ctx, cfg.StateDir, cfg.PrivatePGPort, stderr)
		if err != nil {
			return err
		}
		return p.stop(ctx)
	default:
		return fmt.Errorf("unknown command %q; want run, ensure-postgres or stop-postgres", cmd)
	}
}

func run(ctx context.Context, cfg Config, out io.Writer) error {
	// Services stop first, then the broker, then PostgreSQL: each layer is
	// supervised separately so the order holds.
	infra, err := newSupervisor(out, filepath.Join(cfg.StateDir, "logs"))
	if err != nil {
		return err
	}
	services, err := newSupervisor(out, filepath.Join(cfg.StateDir, "logs"))
	if err != nil {
		return err
	}
	infraCtx, stopInfra := context.WithCancel(context.WithoutCancel(ctx))
	defer func() { stopInfra(); infra.wait() }()
	svcCtx, stopServices := context.WithCancel(context.WithoutCancel(ctx))
	defer func() { stopServices(); services.wait() }()

	dbURL := cfg.DatabaseURL
	if dbURL == "" {
		srv, err := findOrStartPostgres(ctx, cfg.StateDir, cfg.PrivatePGPort, out)
		if err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		if srv.private != nil {
			defer func() {
				if err := srv.private.stop(context.Background()); err != nil {
					infra.logf("stop private PostgreSQL: %v", err)
				} else {
					infra.logf("private PostgreSQL stopped")
				}
			}()
		}
		dbURL = withDatabase(srv.adminURL, "finance")
	}
	infra.logf("PostgreSQL: %s", redactURL(dbURL))

	if cfg.KafkaBrokers == "" {
		err := infra.start(infraCtx, proc{
			name: "devkafka", path: filepath.Join(cfg.BinDir, "devkafka"), stopGrace: 60 * time.Second,
			env: []string{
				"DEVKAFKA_ADDR=" + cfg.KafkaAddr,
				"DEVKAFKA_DATA_DIR=" + filepath.Join(cfg.StateDir, "kafka"),
				"DEVKAFKA_PARTITIONS=" + strconv.Itoa(cfg.Partitions),
				"LOG_LEVEL=" + cfg.LogLevel,
			},
		})
		if err != nil {
			return err
		}
		if err := waitTCP(ctx, cfg.KafkaAddr, 30*time.Second); err != nil {
			return fmt.Errorf("devkafka: %w", err)
		}
	}
	infra.logf("Kafka: %s", cfg.brokers())

	common := []string{
		"DATABASE_URL=" + dbURL,
		"KAFKA_BROKERS=" + cfg.brokers(),
		"KAFKA_PARTITIONS=" + strconv.Itoa(cfg.Partitions),
		"LOG_LEVEL=" + cfg.LogLevel,
		"FINANCE_DEV_MODE=true",
	}
	ctl := filepath.Join(cfg.BinDir, "financectl")
	for _, args := range [][]string{
		{"createdb"},
		{"migrate", "up"},
		{"seed", "--demo"},
		{"topics", "create", "--partitions", strconv.Itoa(cfg.Partitions)},
	} {
		if err := runTool(ctx, out, ctl, common, args...); err != nil {
			return err
		}
	}

	simURL := httpURL(cfg.SimAddr)
	procs := []proc{
		{name: "processor-sim", env: []string{"HTTP_ADDR=" + cfg.SimAddr, "SIM_RATE_LIMIT=" + strconv.Itoa(cfg.ProcessorLimit)}},
		{name: "outbox-relay", env: []string{"OPS_ADDR=" + cfg.RelayOps}},
		{name: "dispatcher", env: []string{"OPS_ADDR=" + cfg.DispatcherOps, "PROCESSOR_URL=" + simURL,
			"PROCESSOR_RATE_LIMIT=" + strconv.Itoa(cfg.ProcessorLimit)}},
		{name: "status-consumer", env: []string{"OPS_ADDR=" + cfg.StatusOps}},
		{name: "gateway", env: []string{"HTTP_ADDR=" + cfg.GatewayAddr}},
	}
	for _, p := range procs {
		p.path = filepath.Join(cfg.BinDir, p.name)
		p.env = append(append([]string{}, common...), p.env...)
		p.stopGrace = 20 * time.Second
		if err := services.start(svcCtx, p); err != nil {
			return err
		}
	}
	for name, u := range map[string]string{
		"processor-sim":   simURL + "/healthz",
		"outbox-relay":    httpURL(cfg.RelayOps) + "/healthz",
		"dispatcher":      httpURL(cfg.DispatcherOps) + "/healthz",
		"status-consumer": httpURL(cfg.StatusOps) + "/healthz",
		"gateway":         httpURL(cfg.GatewayAddr) + "/readyz",
	} {
		if err := waitHTTP(ctx, u, 60*time.Second); err != nil {
			return fmt.Errorf("%s did not become ready: %w", name, err)
		}
	}
	if err := printBanner(out, cfg, simURL); err != nil {
		return err
	}
	<-ctx.Done()
	services.logf("stopping: services first, then the broker, then PostgreSQL")
	return nil
}

func printBanner(out io.Writer, cfg Config, simURL string) error {
	token, err := auth.Mint([]byte(auth.DevSecret), DemoUser, false, 24*time.Hour, time.Now())
	if err != nil {
		return err
	}
	gw := httpURL(cfg.GatewayAddr)
	fmt.Fprintf(out, `
================================================================================
Finance Service is running (dev mode: tokens are signed with the documented dev secret).

  gateway          %s        (feeds, payments, /metrics, /healthz, /readyz)
  processor-sim    %s        (/sim/executions, /sim/stats, /sim/config)
  dispatcher ops   %s/metrics
  relay ops        %s/metrics
  status ops       %s/metrics
  Kafka            %s
  logs             %s

A token for user %d, valid 24 h:

  TOKEN=%s

Pay Apple 5.00 and watch it settle:

  curl -s -i -X POST %s/v1/payments -H "Authorization: Bearer %s" -H 'Content-Type: application/json' -H "Idempotency-Key: demo-$(date +%%s%%N)" -d '{"user_id":%d,"merchant_id":4593,"amount":-500}'
  curl -s %s/v1/users/%d/feed -H "Authorization: Bearer %s"

Ctrl-C stops everything.
================================================================================
`, gw, simURL, httpURL(cfg.DispatcherOps), httpURL(cfg.RelayOps), httpURL(cfg.StatusOps), cfg.brokers(),
		filepath.Join(cfg.StateDir, "logs"), DemoUser, token, gw, token, DemoUser, gw, DemoUser, token)
	return nil
}

// runTool runs a one-shot command (financectl) to completion.
func runTool(ctx context.Context, out io.Writer, path string, env []string, args ...string) error {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %v: %w", filepath.Base(path), args, err)
	}
	return nil
}

func waitTCP(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return conn.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not accepting connections after %v: %w", addr, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func waitHTTP(ctx context.Context, u string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: 2 * time.Second}
	var last error
	for time.Now().Before(deadline) {
		resp, err := client.Get(u)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s answered %d", u, resp.StatusCode)
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return errors.Join(fmt.Errorf("%s not ready after %v", u, timeout), last)
}

func withDatabase(serverURL, name string) string {
	u, err := url.Parse(serverURL)
	if err != nil {
		return serverURL
	}
	u.Path = "/" + name
	return u.String()
}
