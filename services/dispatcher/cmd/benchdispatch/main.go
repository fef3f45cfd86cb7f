// Command benchdispatch measures the dispatcher against the real processor
// simulator: a burst of payments queued in an in-process Kafka-protocol
// cluster (kfake, over TCP) drained by 1 and by 2 dispatcher processes with
// the processor's limit L configured, by 1 process with L unknown, and the
// delay the dispatcher adds when the system is idle. It prints one report
// per scenario. `make bench-dispatcher` builds the binaries and runs it.
//
// The dispatcher's guard reads every payment in PostgreSQL before its
// processor call, so the benchmark creates a database of its own on the
// server of -postgres, migrates it with pkg/schema, seeds each scenario's
// payments (accepted, each with its uid) before producing their records,
// and drops it at the end.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/finsvc/finance/pkg/clock"
	"github.com/finsvc/finance/pkg/entry"
	"github.com/finsvc/finance/pkg/freeport"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/pkg/procstat"
	"github.com/finsvc/finance/pkg/simclient"
	"github.com/finsvc/finance/pkg/wire"
)

type options struct {
	dispatcher, sim string
	payments, users int
	limit           int
	partitions      int
	scenarios       string
	unknownPayments int
	idlePayments    int
	logDir          string
	postgres        string
	out             io.Writer // the report
}

func main() { entry.Main("benchdispatch", run) }

// run parses the flags and runs the benchmark, its report on stdout.
func run(ctx context.Context, args []string, _ func(string) string, stdout, stderr io.Writer) error {
	o := options{out: stdout}
	fs := flag.NewFlagSet("benchdispatch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.dispatcher, "dispatcher", "bin/dispatcher", "dispatcher binary")
	fs.StringVar(&o.sim, "sim", "bin/processor-sim", "processor-sim binary")
	fs.IntVar(&o.payments, "payments", 50000, "payments in the burst")
	fs.IntVar(&o.users, "users", 5000, "users the burst is spread over")
	fs.IntVar(&o.limit, "limit", 300, "the processor's limit L (SIM_RATE_LIMIT)")
	fs.IntVar(&o.partitions, "partitions", kafka.DefaultPartitions, "partitions of each topic")
	fs.StringVar(&o.scenarios, "scenarios", "idle,one,two,unknown", "scenarios to run, comma separated")
	fs.IntVar(&o.unknownPayments, "unknown-payments", 50000, "payments in the burst of the L-unknown scenario")
	fs.IntVar(&o.idlePayments, "idle-payments", 500, "payments sent one at a time in the idle scenario")
	fs.StringVar(&o.logDir, "logs", "", "directory for the processes' logs (default: a temporary one)")
	fs.StringVar(&o.postgres, "postgres", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
		"a database of the PostgreSQL server to create the benchmark's own database on (and drop it after)")
	if err := fs.Parse(args); err != nil {
		return &entry.UsageError{Err: err}
	}
	if fs.NArg() > 0 {
		return entry.Usagef("unexpected argument %q", fs.Arg(0))
	}
	return bench(ctx, o)
}

func bench(ctx context.Context, o options) (err error) {
	if o.logDir == "" {
		d, err := os.MkdirTemp("", "benchdispatch-")
		if err != nil {
			return err
		}
		o.logDir = d
	} else if err := os.MkdirAll(o.logDir, 0o755); err != nil {
		return err
	}
	db, err := createDatabase(ctx, o.postgres)
	if err != nil {
		return err
	}
	defer func() {
		if derr := db.drop(); derr != nil {
			err = errors.Join(err, fmt.Errorf("drop database %s: %w", db.name, derr))
		}
	}()
	fmt.Fprintf(o.out, "benchdispatch: L=%d/s, sim latency p50 100ms p99 1s, %d partitions, database %s, logs in %s\n",
		o.limit, o.partitions, postgres.RedactURL(db.url), o.logDir)
	for _, s := range strings.Split(o.scenarios, ",") {
		var err error
		switch strings.TrimSpace(s) {
		case "idle":
			err = idle(ctx, o, db)
		case "one":
			err = drain(ctx, o, db, "one replica, L configured", 1, o.limit, o.payments)
		case "two":
			err = drain(ctx, o, db, "two replicas, L configured", 2, o.limit, o.payments)
		case "unknown":
			err = drain(ctx, o, db, "one replica, L unknown (PROCESSOR_RATE_LIMIT=0)", 1, 0, o.unknownPayments)
		default:
			err = fmt.Errorf("unknown scenario %q", s)
		}
		if err != nil {
			return fmt.Errorf("scenario %s: %w", s, err)
		}
	}
	return nil
}

// env is one scenario's cluster, simulator and payments.
type env struct {
	o       options
	db      *database
	cluster *kfake.Cluster
	brokers []string
	simURL  string
	sim     *simclient.Client
	procs   []*exec.Cmd
	logs    []*os.File
	// dispatchers are the dispatcher processes among procs.
	dispatchers []*exec.Cmd
	// payments are the scenario's payments, seeded in the database, in
	// the order their records are produced; byUID finds them by uid.
	payments []benchPayment
	byUID    map[uuid.UUID]benchPayment
}

// start seeds ps in the database and starts the scenario's cluster and
// simulator.
func start(ctx context.Context, o options, db *database, name string, ps []benchPayment) (*env, error) {
	begin := time.Now()
	if err := db.seed(ctx, ps); err != nil {
		return nil, err
	}
	fmt.Fprintf(o.out, "seeded %d accepted payments (with uids) in %v\n", len(ps), time.Since(begin).Round(time.Millisecond))
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(o.partitions), append(kafka.Topics(), kafka.DLQTopics()...)...))
	if err != nil {
		return nil, err
	}
	e := &env{o: o, db: db, cluster: c, brokers: c.ListenAddrs(), payments: ps, byUID: make(map[uuid.UUID]benchPayment, len(ps))}
	for _, p := range ps {
		e.byUID[p.uid] = p
	}
	addr, err := freeport.Addr()
	if err != nil {
		e.close()
		return nil, err
	}
	e.simURL = "http://" + addr
	e.sim = simclient.New(e.simURL)
	if err := e.spawn(o.sim, name+"-sim", "HTTP_ADDR="+addr, "LOG_LEVEL=warn",
		"SIM_RATE_LIMIT="+strconv.Itoa(o.limit), "SIM_LATENCY_P50=100ms", "SIM_LATENCY_P99=1s"); err != nil {
		e.close()
		return nil, err
	}
	if err := waitHTTP(ctx, e.simURL+"/healthz"); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func (e *env) spawn(bin, name string, environ ...string) error {
	f, err := os.Create(filepath.Join(e.o.logDir, name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), environ...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", bin, err)
	}
	e.procs = append(e.procs, cmd)
	e.logs = append(e.logs, f)
	return nil
}

// dispatcher starts replica i and returns its ops address.
func (e *env) dispatcher(name string, i, limit int) (string, error) {
	ops, err := freeport.Addr()
	if err != nil {
		return "", err
	}
	err = e.spawn(e.o.dispatcher, fmt.Sprintf("%s-dispatcher-%d", name, i),
		"KAFKA_BROKERS="+strings.Join(e.brokers, ","), "OPS_ADDR="+ops, "PROCESSOR_URL="+e.simURL,
		"DATABASE_URL="+e.db.url,
		"PROCESSOR_RATE_LIMIT="+strconv.Itoa(limit), "LOG_LEVEL=info",
		"DISPATCHER_TRANSACTIONAL_ID="+fmt.Sprintf("bench-%s-%d", name, i))
	if err == nil {
		e.dispatchers = append(e.dispatchers, e.procs[len(e.procs)-1])
	}
	return ops, err
}

func (e *env) close() {
	for _, p := range slices.Backward(e.procs) {
		_ = p.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(40 * time.Second):
			_ = p.Process.Kill()
			<-done
		}
	}
	for _, f := range e.logs {
		f.Close()
	}
	e.cluster.Close()
}

// waitOwned waits until the replicas together own every partition, each
// at least one.
func (e *env) waitOwned(ctx context.Context, ops []string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		sum, all := 0.0, true
		for _, a := range ops {
			v, err := metric(a, "dispatcher_partitions_owned")
			if err != nil || v < 1 {
				all = false
			}
			sum += v
		}
		if all && int(sum) == e.o.partitions {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replicas own %v partitions, want %d", sum, e.o.partitions)
		}
		if err := clock.Sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// burstPayments are n payments for users 1..users, ids 1..n, user by user
// in each round, the way concurrent clients would send them, each with a
// fresh uid.
func burstPayments(n, users int) []benchPayment {
	ps := make([]benchPayment, n)
	for i := range ps {
		id := i + 1
		ps[i] = benchPayment{id: int64(id), user: int64((id-1)%users + 1), amount: -int64(100 + id%900), uid: payment.NewUID()}
	}
	return ps
}

// request is the PaymentRequested record of p.
func request(p benchPayment) (*kgo.Record, error) {
	v, err := wire.EncodeRequested(wire.Requested{PaymentID: p.id, PaymentUID: p.uid.String(), UserID: p.user, MerchantID: 1, Amount: p.amount})
	if err != nil {
		return nil, err
	}
	return &kgo.Record{Topic: kafka.TopicRequested, Key: kafka.UserKey(p.user), Value: v}, nil
}

// burst produces the records of every payment of the scenario at once.
func (e *env) burst(ctx context.Context) error {
	cl, err := kafka.NewClient(e.brokers, slog.New(slog.DiscardHandler), kgo.MaxBufferedRecords(100000))
	if err != nil {
		return err
	}
	defer cl.Close()
	var firstErr error
	for _, p := range e.payments {
		rec, err := request(p)
		if err != nil {
			return err
		}
		cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			if err != nil && firstErr == nil {
				firstErr = err
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	return firstErr
}

// executions returns the simulator's executions in the order it made them.
func (e *env) executions(ctx context.Context) ([]simclient.Execution, error) {
	execs, err := e.sim.ExecutionsAfter(ctx, 0)
	slices.SortFunc(execs, func(a, b simclient.Execution) int { return int(a.Seq - b.Seq) })
	return execs, err
}

// drain runs one burst scenario.
func drain(ctx context.Context, o options, db *database, title string, replicas, limit, n int) error {
	name := fmt.Sprintf("drain-%d-%d", replicas, limit)
	fmt.Fprintf(o.out, "\n== %s: %d payments for %d users\n", title, n, o.users)
	e, err := start(ctx, o, db, name, burstPayments(n, o.users))
	if err != nil {
		return err
	}
	defer e.close()
	var ops []string
	for i := range replicas {
		a, err := e.dispatcher(name, i, limit)
		if err != nil {
			return err
		}
		ops = append(ops, a)
	}
	if err := e.waitOwned(ctx, ops); err != nil {
		return err
	}
	cpuBefore, err := e.cpu(ctx, ops)
	if err != nil {
		return err
	}
	begin := time.Now()
	if err := e.burst(ctx); err != nil {
		return err
	}
	fmt.Fprintf(o.out, "burst queued in %v\n", time.Since(begin).Round(time.Millisecond))

	// Progress every 10 s until every payment executed.
	last := time.Now()
	executed, progressed := int64(0), time.Now()
	var peakShare []float64
	for {
		s, err := e.sim.Stats(ctx)
		if err != nil {
			return err
		}
		if s.Executed+s.Declined >= int64(n) {
			break
		}
		if time.Since(last) >= 10*time.Second {
			last = time.Now()
			var rates []string
			for _, a := range ops {
				r, _ := metric(a, "dispatcher_pacer_rate_per_second")
				sh, _ := metric(a, "dispatcher_pacer_share_per_second")
				rates = append(rates, fmt.Sprintf("rate %.0f share %.0f", r, sh))
				peakShare = append(peakShare, sh)
			}
			fmt.Fprintf(o.out, "  t=%3.0fs executed %6d  429s %5d  %s\n", time.Since(begin).Seconds(), s.Executed, s.RateLimited, strings.Join(rates, " | "))
		}
		if s.Executed+s.Declined > executed {
			executed, progressed = s.Executed+s.Declined, time.Now()
		}
		stalled := time.Since(progressed) > stallAfter
		if stalled || time.Since(begin) > time.Duration(float64(n)/float64(o.limit)*3+120)*time.Second {
			e.diagnose(ops)
			return fmt.Errorf("drain did not finish: %d of %d executed (stalled: %t); the dispatchers' goroutines are in %s",
				s.Executed+s.Declined, n, stalled, o.logDir)
		}
		if err := clock.Sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
	wall := time.Since(begin)
	cpuAfter, err := e.cpu(ctx, ops)
	if err != nil {
		return err
	}
	s, err := e.sim.Stats(ctx)
	if err != nil {
		return err
	}
	execs, err := e.executions(ctx)
	if err != nil {
		return err
	}
	violations, dups, foreign := e.orderViolations(execs)
	first, lastAt := execs[0].ExecutedAt, execs[len(execs)-1].ExecutedAt
	span := lastAt.Sub(first).Seconds()
	tput := float64(len(execs)-1) / span
	fmt.Fprintf(o.out, "executed %d (declined %d) in %.1f s (first to last execution); wall clock from the burst %.1f s\n", len(execs), s.Declined, span, wall.Seconds())
	fmt.Fprintf(o.out, "drain throughput %.1f/s = %.3f x L\n", tput, tput/float64(o.limit))
	if limit == 0 {
		after := first.Add(10 * time.Second)
		k := 0
		for _, x := range execs {
			if !x.ExecutedAt.Before(after) {
				k++
			}
		}
		t10 := float64(k-1) / lastAt.Sub(after).Seconds()
		fmt.Fprintf(o.out, "after the first 10 s: %.1f/s = %.3f x L\n", t10, t10/float64(o.limit))
	}
	fmt.Fprintf(o.out, "processor calls %d, 429s %d, replays %d\n", s.Calls, s.RateLimited, s.Replayed)
	fmt.Fprintf(o.out, "per-user order violations %d, payments executed twice %d, executions of no benchmark payment %d\n", violations, dups, foreign)

	// Every payment has exactly one committed final outcome.
	finals, err := e.outcomes(ctx, n)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.out, "committed final outcomes %d (distinct payments %d)\n", finals.total, finals.distinct)
	if err := e.reportGuard(ops, n); err != nil {
		return err
	}
	cpuAfter.report(o.out, cpuBefore, n)
	return nil
}

// stallAfter is how long a drain may go without a single execution before
// the benchmark gives up on it.
const stallAfter = 2 * time.Minute

// diagnose prints the dispatchers' own metrics (histogram buckets left out)
// and makes each write its goroutines to its log (SIGQUIT), for a drain
// that did not finish.
func (e *env) diagnose(ops []string) {
	for i, a := range ops {
		m, err := metrics(a)
		if err != nil {
			fmt.Fprintf(e.o.out, "replica %d metrics: %v\n", i, err)
			continue
		}
		var lines []string
		for k, v := range m {
			if strings.HasPrefix(k, "dispatcher_") && !strings.Contains(k, "_bucket{") {
				lines = append(lines, fmt.Sprintf("  %s %g", k, v))
			}
		}
		slices.Sort(lines)
		fmt.Fprintf(e.o.out, "replica %d (%s) metrics:\n%s\n", i, a, strings.Join(lines, "\n"))
	}
	for _, p := range e.dispatchers {
		_ = p.Process.Signal(syscall.SIGQUIT)
	}
}

// payment returns the benchmark payment an execution belongs to: the one
// whose uid its idempotency key names (payment.ProcessorKey), whatever its
// reference says.
func (e *env) payment(x simclient.Execution) (benchPayment, bool) {
	uid, ok := payment.ParseProcessorKey(x.IdempotencyKey)
	if !ok {
		return benchPayment{}, false
	}
	p, ok := e.byUID[uid]
	return p, ok
}

// orderViolations counts, per user, executions of a payment id lower than
// one executed before it (ids were queued in increasing order per user),
// payments executed more than once, and executions whose key names no
// payment of the scenario.
func (e *env) orderViolations(execs []simclient.Execution) (violations, dups, foreign int) {
	lastByUser := map[int64]int64{}
	seen := map[string]bool{}
	for _, x := range execs {
		if seen[x.IdempotencyKey] {
			dups++
			continue
		}
		seen[x.IdempotencyKey] = true
		p, ok := e.payment(x)
		if !ok {
			foreign++
			continue
		}
		if p.id < lastByUser[p.user] {
			violations++
		}
		lastByUser[p.user] = max(lastByUser[p.user], p.id)
	}
	return violations, dups, foreign
}

// reportGuard prints the dispatch guard's verdicts summed over the
// replicas: every payment must have been admitted (send) once, and none
// found stale.
func (e *env) reportGuard(ops []string, n int) error {
	verdicts := map[string]float64{}
	for _, a := range ops {
		m, err := metrics(a)
		if err != nil {
			return err
		}
		for k, v := range m {
			if r, ok := strings.CutPrefix(k, `dispatcher_guard_total{result="`); ok {
				verdicts[strings.TrimSuffix(r, `"}`)] += v
			}
		}
	}
	line := fmt.Sprintf("send %.0f, stale %.0f", verdicts["send"], verdicts["stale"])
	for _, r := range []string{"final", "claimed", "error"} {
		if verdicts[r] != 0 {
			line += fmt.Sprintf(", %s %.0f", r, verdicts[r])
		}
	}
	verdict := "as expected"
	if verdicts["send"] != float64(n) || verdicts["stale"] != 0 {
		verdict = fmt.Sprintf("WRONG: want send %d, stale 0", n)
	}
	fmt.Fprintf(e.o.out, "dispatch guard (dispatcher_guard_total, all replicas): %s: %s\n", line, verdict)
	return nil
}

// cpuReading is, at one time, the dispatchers' process_cpu_seconds_total
// and the CPU seconds of the PostgreSQL backends serving them.
type cpuReading struct {
	dispatcher float64
	backends   map[int32]float64
	backendErr error
}

func (e *env) cpu(ctx context.Context, ops []string) (cpuReading, error) {
	var r cpuReading
	for _, a := range ops {
		v, err := metric(a, "process_cpu_seconds_total")
		if err != nil {
			return r, err
		}
		r.dispatcher += v
	}
	r.backends, r.backendErr = e.db.backendCPU(ctx)
	return r, nil
}

// report prints the CPU used from before to r per payment: the
// dispatchers' (all of their work, the guard's client side included) and
// their PostgreSQL backends' (nothing but the guard's statements).
func (r cpuReading) report(w io.Writer, before cpuReading, n int) {
	d := r.dispatcher - before.dispatcher
	line := fmt.Sprintf("CPU from the burst to the drain's end: dispatcher %.1f s = %.3f ms per payment", d, d/float64(n)*1000)
	if err := errors.Join(before.backendErr, r.backendErr); err != nil {
		line += fmt.Sprintf("; PostgreSQL backends not measured (%v)", err)
	} else {
		pg := procstat.Used(before.backends, r.backends)
		line += fmt.Sprintf("; PostgreSQL backends of the guard (%d) %.1f s = %.3f ms per payment", len(r.backends), pg, pg/float64(n)*1000)
	}
	fmt.Fprintln(w, line)
}

type finalCount struct{ total, distinct int }

// outcomes reads payments.outcomes with read_committed until n distinct
// payments have a final outcome, or 60 s pass.
func (e *env) outcomes(ctx context.Context, n int) (finalCount, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ConsumeTopics(kafka.TopicOutcomes),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return finalCount{}, err
	}
	defer cl.Close()
	ids := map[int64]bool{}
	var c finalCount
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for len(ids) < n && rctx.Err() == nil {
		cl.PollFetches(rctx).EachRecord(func(r *kgo.Record) {
			o, err := wire.DecodeOutcome(r.Value)
			if err != nil || o.Status == payment.StatusProcessing {
				return
			}
			c.total++
			ids[o.PaymentID] = true
		})
	}
	c.distinct = len(ids)
	return c, nil
}

// idle measures the delay the dispatcher adds at low load: payments are
// produced one at a time and the simulator, with its latency off, records
// when each call arrived.
func idle(ctx context.Context, o options, db *database) error {
	fmt.Fprintf(o.out, "\n== idle: %d payments one at a time, 20 ms apart, simulator latency 0\n", o.idlePayments)
	ps := make([]benchPayment, o.idlePayments)
	for i := range ps {
		ps[i] = benchPayment{id: int64(i + 1), user: int64((i+1)%50 + 1), amount: -100, uid: payment.NewUID()}
	}
	e, err := start(ctx, o, db, "idle", ps)
	if err != nil {
		return err
	}
	defer e.close()
	if err := e.sim.UpdateSettings(ctx, map[string]any{"latency_p50": "0s", "latency_p99": "0s"}); err != nil {
		return err
	}
	a, err := e.dispatcher("idle", 0, o.limit)
	if err != nil {
		return err
	}
	if err := e.waitOwned(ctx, []string{a}); err != nil {
		return err
	}
	cl, err := kafka.NewClient(e.brokers, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer cl.Close()
	available := map[uuid.UUID]time.Time{}
	for _, p := range ps {
		rec, err := request(p)
		if err != nil {
			return err
		}
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			return err
		}
		// The record is available to consumers once the broker acked it.
		available[p.uid] = time.Now()
		if err := clock.Sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	var execs []simclient.Execution
	for {
		execs, err = e.executions(ctx)
		if err != nil {
			return err
		}
		if len(execs) >= o.idlePayments || time.Now().After(deadline) {
			break
		}
		if err := clock.Sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	var delays []float64
	for _, x := range execs {
		if p, ok := e.payment(x); ok {
			delays = append(delays, x.ExecutedAt.Sub(available[p.uid]).Seconds()*1000)
		}
	}
	if len(delays) == 0 {
		return errors.New("no executions")
	}
	slices.Sort(delays)
	q := func(p float64) float64 { return delays[int(math.Ceil(p*float64(len(delays))))-1] }
	fmt.Fprintf(o.out, "delay from record available (produce acked) to processor call, %d payments: p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
		len(delays), q(0.5), q(0.99), delays[len(delays)-1])
	return e.reportGuard([]string{a}, o.idlePayments)
}

// metrics returns every sample of addr's /metrics by name and labels, as
// written there (`name{label="value"}`).
func metrics(addr string) (map[string]float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, nil
}

func metric(addr, name string) (float64, error) {
	m, err := metrics(addr)
	if err != nil {
		return 0, err
	}
	v, ok := m[name]
	if !ok {
		return 0, fmt.Errorf("metric %s not found", name)
	}
	return v, nil
}

func waitHTTP(ctx context.Context, url string) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not up: %w", url, err)
		}
		if err := clock.Sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}
