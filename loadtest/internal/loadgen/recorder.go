package loadgen

import (
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/finsvc/finance/loadtest/internal/target"
)

// Op is the kind of a request.
type Op int

// The request kinds.
const (
	Write Op = iota // a payment
	Read            // a feed
)

// Latencies are recorded in microseconds, from 1 µs to 10 minutes.
const (
	histMin = 1
	histMax = int64(10 * time.Minute / time.Microsecond)
)

// Percentiles summarises a latency distribution, in milliseconds.
type Percentiles struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

func percentilesOf(h *hdrhistogram.Histogram) Percentiles {
	if h == nil || h.TotalCount() == 0 {
		return Percentiles{}
	}
	ms := func(us int64) float64 { return math.Round(float64(us)/10) / 100 }
	return Percentiles{
		Count: h.TotalCount(),
		Mean:  math.Round(h.Mean()/10) / 100,
		P50:   ms(h.ValueAtQuantile(50)),
		P90:   ms(h.ValueAtQuantile(90)),
		P99:   ms(h.ValueAtQuantile(99)),
		P999:  ms(h.ValueAtQuantile(99.9)),
		Max:   ms(h.Max()),
	}
}

// SecondOp is one second's requests of one kind: Sent by intended send
// time, the answers and their latencies by the time they arrived.
type SecondOp struct {
	Sent   int64   `json:"sent,omitzero"`
	Done   int64   `json:"answered,omitzero"`
	OK     int64   `json:"ok,omitzero"`
	Failed int64   `json:"failed,omitzero"`
	P50    float64 `json:"p50_ms,omitzero"`
	P90    float64 `json:"p90_ms,omitzero"`
	P99    float64 `json:"p99_ms,omitzero"`
	Max    float64 `json:"max_ms,omitzero"`
}

// Second is one bucket of the run, a second long (a tenth of a second for
// runs of 10 s or less: a burst's acceptance happens within a few).
type Second struct {
	// T is the bucket's start, in seconds since the start of the run.
	T      float64  `json:"t"`
	Writes SecondOp `json:"writes,omitzero"`
	Reads  SecondOp `json:"reads,omitzero"`
}

// OpSummary is the whole run's requests of one kind.
type OpSummary struct {
	Sent      int64            `json:"sent"`
	Completed int64            `json:"completed"`
	ByClass   map[string]int64 `json:"by_class"`
	ByCode    map[string]int64 `json:"by_code"`
	// Errors holds the first error text seen per class, to diagnose.
	Errors map[string]string `json:"errors,omitempty"`
	// Latency is of every answer, errors included, measured from the
	// request's intended send time (open model: no coordinated omission).
	Latency Percentiles `json:"latency"`
	// OKPerSecond is the 2xx answers per second of load.
	OKPerSecond float64 `json:"ok_per_second"`
	// Retried counts the requests sent a second time, with the same
	// Idempotency-Key, after the target closed the connection before
	// answering the first (target.Response.Retried).
	Retried int64 `json:"retried,omitempty"`
}

type opRecorder struct {
	all     *hdrhistogram.Histogram
	live    *hdrhistogram.Histogram
	seconds map[int]*hdrhistogram.Histogram
	sum     map[int]*SecondOp
	byClass map[target.Class]int64
	byCode  map[int]int64
	errors  map[target.Class]string
	sent    int64
	done    int64
	retried int64
}

func newOpRecorder() *opRecorder {
	return &opRecorder{
		all:     hdrhistogram.New(histMin, histMax, 3),
		live:    hdrhistogram.New(histMin, histMax, 2),
		seconds: map[int]*hdrhistogram.Histogram{},
		sum:     map[int]*SecondOp{},
		byClass: map[target.Class]int64{},
		byCode:  map[int]int64{},
		errors:  map[target.Class]string{},
	}
}

// Recorder collects every request's outcome. Per-second histograms are
// kept only until their second is over, then folded into their
// percentiles, so a 30-minute run stays small.
type Recorder struct {
	mu    sync.Mutex
	start time.Time
	width time.Duration
	ops   [2]*opRecorder
	lag   *hdrhistogram.Histogram
}

// NewRecorder returns a recorder of a run that starts at start, with
// buckets width long.
func NewRecorder(start time.Time, width time.Duration) *Recorder {
	return &Recorder{start: start, width: width, ops: [2]*opRecorder{newOpRecorder(), newOpRecorder()},
		lag: hdrhistogram.New(histMin, histMax, 2)}
}

// Width is the bucket width.
func (r *Recorder) Width() time.Duration { return r.width }

func (r *Recorder) second(t time.Time) int {
	d := t.Sub(r.start)
	if d < 0 {
		return 0
	}
	return int(d / r.width)
}

// Bucket returns the bucket of time t.
func (r *Recorder) Bucket(t time.Time) int { return r.second(t) }

// Sent records that a request intended for intended left at sent.
func (r *Recorder) Sent(op Op, intended, sent time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o := r.ops[op]
	o.sent++
	s := r.second(intended)
	if o.sum[s] == nil {
		o.sum[s] = &SecondOp{}
	}
	o.sum[s].Sent++
	_ = r.lag.RecordValue(clampUS(sent.Sub(intended)))
}

// Done records a request's answer at done.
func (r *Recorder) Done(op Op, intended, done time.Time, resp target.Response) {
	us := clampUS(done.Sub(intended))
	r.mu.Lock()
	defer r.mu.Unlock()
	o := r.ops[op]
	o.done++
	if resp.Retried {
		o.retried++
	}
	o.byClass[resp.Class]++
	o.byCode[resp.Code]++
	if resp.Class != target.OK && o.errors[resp.Class] == "" {
		e := resp.Err
		if resp.Code != 0 {
			e = strconv.Itoa(resp.Code) + " " + e
		}
		o.errors[resp.Class] = e
	}
	_ = o.all.RecordValue(us)
	_ = o.live.RecordValue(us)
	s := r.second(done)
	h := o.seconds[s]
	if h == nil {
		h = hdrhistogram.New(histMin, histMax, 2)
		o.seconds[s] = h
	}
	_ = h.RecordValue(us)
	if o.sum[s] == nil {
		o.sum[s] = &SecondOp{}
	}
	o.sum[s].Done++
	if resp.Class == target.OK {
		o.sum[s].OK++
	} else {
		o.sum[s].Failed++
	}
}

// Live returns the p99 of the answers since the last call, in milliseconds,
// and starts a new window.
func (r *Recorder) Live(op Op) (p99 float64, n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.ops[op].live
	p99, n = float64(h.ValueAtQuantile(99))/1000, h.TotalCount()
	h.Reset()
	return p99, n
}

// Totals returns how many requests were sent, answered and answered 2xx.
func (r *Recorder) Totals(op Op) (sent, done, ok int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o := r.ops[op]
	return o.sent, o.done, o.byClass[target.OK]
}

// Fold turns the histograms of buckets before bucket `before` into
// percentiles and frees them.
func (r *Recorder) Fold(before int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range r.ops {
		for s, h := range o.seconds {
			if s < before {
				fold(o, s, h)
				delete(o.seconds, s)
			}
		}
	}
}

func fold(o *opRecorder, s int, h *hdrhistogram.Histogram) {
	if o.sum[s] == nil {
		o.sum[s] = &SecondOp{}
	}
	p := percentilesOf(h)
	o.sum[s].P50, o.sum[s].P90, o.sum[s].P99, o.sum[s].Max = p.P50, p.P90, p.P99, p.Max
}

// OKAt returns the 2xx answers that arrived during bucket s.
func (r *Recorder) OKAt(op Op, s int) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if v := r.ops[op].sum[s]; v != nil {
		return v.OK
	}
	return 0
}

// Summary returns the run's totals, per-second series and send lag.
func (r *Recorder) Summary(loadDuration time.Duration) (writes, reads OpSummary, seconds []Second, lag Percentiles) {
	r.Fold(math.MaxInt)
	r.mu.Lock()
	defer r.mu.Unlock()
	sum := func(o *opRecorder) OpSummary {
		s := OpSummary{Sent: o.sent, Completed: o.done, ByClass: map[string]int64{}, ByCode: map[string]int64{},
			Latency: percentilesOf(o.all), Retried: o.retried}
		for c, n := range o.byClass {
			s.ByClass[string(c)] = n
		}
		for c, e := range o.errors {
			if s.Errors == nil {
				s.Errors = map[string]string{}
			}
			s.Errors[string(c)] = e
		}
		for c, n := range o.byCode {
			k := "none"
			if c != 0 {
				k = strconv.Itoa(c)
			}
			s.ByCode[k] = n
		}
		if d := loadDuration.Seconds(); d > 0 {
			s.OKPerSecond = math.Round(float64(o.byClass[target.OK])/d*10) / 10
		}
		return s
	}
	writes, reads = sum(r.ops[Write]), sum(r.ops[Read])
	last := -1
	for _, o := range r.ops {
		for s := range o.sum {
			last = max(last, s)
		}
	}
	for s := 0; s <= last; s++ {
		sec := Second{T: math.Round(float64(s)*r.width.Seconds()*1000) / 1000}
		if v := r.ops[Write].sum[s]; v != nil {
			sec.Writes = *v
		}
		if v := r.ops[Read].sum[s]; v != nil {
			sec.Reads = *v
		}
		seconds = append(seconds, sec)
	}
	return writes, reads, seconds, percentilesOf(r.lag)
}

func clampUS(d time.Duration) int64 {
	us := int64(d / time.Microsecond)
	return min(max(us, histMin), histMax)
}
