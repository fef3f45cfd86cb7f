package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/finsvc/finance/pkg/filelock"
)

// Status is the outcome of a payment at the processor.
type Status string

// The outcomes. Only succeeded payments were executed: money moved.
const (
	StatusSucceeded Status = "succeeded"
	StatusDeclined  Status = "declined"
)

// Resource is a settled payment as the proposed API returns it.
type Resource struct {
	ID             string    `json:"id"`
	IdempotencyKey string    `json:"idempotency_key,omitempty"`
	UserID         int64     `json:"user_id"`
	Amount         int64     `json:"amount"`
	Reference      string    `json:"reference,omitempty"`
	Status         Status    `json:"status"`
	Reason         string    `json:"reason,omitempty"`
	CreatedAt      time.Time `json:"created_at"`
}

// Record is one line of the journal: every settled payment, executed or
// declined, with what is needed to rebuild the execution record and the
// idempotency keys after a restart.
type Record struct {
	// Seq numbers executions 1, 2, 3…; 0 for a decline.
	Seq         int64  `json:"seq,omitempty"`
	API         API    `json:"api"`
	RequestHash string `json:"request_hash,omitempty"`
	// AnswerAt is when the reply to the executing call was due to leave:
	// CreatedAt plus the latency left after the execution. The caller may
	// have gone, or the reply been dropped, by then. Zero in records
	// written before it was kept.
	AnswerAt time.Time `json:"answer_at,omitzero"`
	Resource
}

// Execution is a payment the processor executed, as /sim/executions lists it.
type Execution struct {
	Seq            int64     `json:"seq"`
	ID             string    `json:"id"`
	IdempotencyKey string    `json:"idempotency_key"`
	UserID         int64     `json:"user_id"`
	Amount         int64     `json:"amount"`
	Reference      string    `json:"reference,omitempty"`
	API            API       `json:"api"`
	ExecutedAt     time.Time `json:"executed_at"`
	// AnsweredAt is Record.AnswerAt: when the processor's answer left, so
	// that a load test can time what follows from the answer rather than
	// from the execution, half a latency earlier. Omitted when unknown.
	AnsweredAt time.Time `json:"answered_at,omitzero"`
}

// Filter selects executions; zero fields match everything.
type Filter struct {
	UserID int64
	Key    string
	// AfterSeq, when above 0, keeps the executions numbered above it: what
	// was executed since a reader last looked.
	AfterSeq int64
}

// journal is the execution record: in memory, and appended as JSON lines to
// a file when one is configured.
type journal struct {
	mu      sync.Mutex
	f       *os.File // nil without a data file
	settled int64    // records written so far; numbers the ids
	execs   []Execution
	byUser  map[int64][]int
	// byKey holds every execution under a key: after the key expired, a
	// call with it executes again, and the record must show both.
	byKey map[string][]int
}

// loadReport says what openJournal found in the data file.
type loadReport struct {
	records, executions int
	// truncated is the size of an unfinished last line that was cut off,
	// left by a crash in the middle of a write.
	truncated int
}

// openJournal reads path (if set and present), rebuilds the record and
// opens the file for appending. It returns the records read so that the
// caller can restore idempotency keys. The file is locked (flock) for as
// long as the journal is open: a second simulator on the same file would cut
// the first one's unfinished line and leave a hole of NUL bytes where the
// first goes on writing, and the record of executions, which the reconciler
// trusts as the processor's own, would be lost from there on. So a second
// opener fails at once, naming the file.
func openJournal(path string) (*journal, []Record, loadReport, error) {
	j := &journal{byUser: map[int64][]int{}, byKey: map[string][]int{}}
	var rep loadReport
	if path == "" {
		return j, nil, rep, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, nil, rep, fmt.Errorf("open data file: %w", err)
	}
	if err := filelock.TryLock(f); err != nil {
		f.Close()
		if errors.Is(err, filelock.ErrHeld) {
			return nil, nil, rep, fmt.Errorf("data file %s is in use by another processor simulator: stop it first, or give this one another SIM_DATA_FILE", path)
		}
		return nil, nil, rep, fmt.Errorf("lock data file %s: %w", path, err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, nil, rep, fmt.Errorf("read data file: %w", err)
	}
	var recs []Record
	good := 0 // bytes of data holding complete, valid lines
	for line := 1; good < len(data); line++ {
		rest := data[good:]
		n := bytes.IndexByte(rest, '\n')
		last := n < 0
		if last {
			n = len(rest)
		}
		var r Record
		if err := json.Unmarshal(rest[:n], &r); err != nil {
			if last {
				rep.truncated = n
				break
			}
			f.Close()
			return nil, nil, rep, fmt.Errorf("data file %s line %d: %w", path, line, err)
		}
		recs = append(recs, r)
		j.add(r)
		good += n
		if !last {
			good++
		}
	}
	// Drop an unfinished last line, and end a complete one missing its
	// newline, so that appends start on a line of their own.
	if err := f.Truncate(int64(good)); err != nil {
		f.Close()
		return nil, nil, rep, fmt.Errorf("truncate data file: %w", err)
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return nil, nil, rep, fmt.Errorf("seek data file: %w", err)
	}
	if good > 0 && data[good-1] != '\n' {
		if _, err := f.Write([]byte{'\n'}); err != nil {
			f.Close()
			return nil, nil, rep, fmt.Errorf("write data file: %w", err)
		}
	}
	j.f = f
	rep.records, rep.executions = len(recs), len(j.execs)
	return j, recs, rep, nil
}

// add puts r into memory; the caller holds mu or owns j exclusively.
func (j *journal) add(r Record) {
	j.settled++
	if r.Status != StatusSucceeded {
		return
	}
	i := len(j.execs)
	j.execs = append(j.execs, Execution{
		Seq: r.Seq, ID: r.ID, IdempotencyKey: r.IdempotencyKey, UserID: r.UserID,
		Amount: r.Amount, Reference: r.Reference, API: r.API, ExecutedAt: r.CreatedAt, AnsweredAt: r.AnswerAt,
	})
	j.byUser[r.UserID] = append(j.byUser[r.UserID], i)
	if r.IdempotencyKey != "" {
		j.byKey[r.IdempotencyKey] = append(j.byKey[r.IdempotencyKey], i)
	}
}

// append numbers rs (ids, and seqs for executions), writes them to the
// data file with one write, a batch's records together, and then to
// memory. If the write fails nothing is recorded, and the caller must treat
// the payments as not executed.
func (j *journal) append(rs ...*Record) error {
	if len(rs) == 0 {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	settled, execs := j.settled, int64(len(j.execs))
	var lines []byte
	for _, r := range rs {
		settled++
		r.ID = fmt.Sprintf("pay_%08d", settled)
		r.Seq = 0
		if r.Status == StatusSucceeded {
			execs++
			r.Seq = execs
		}
		if j.f != nil {
			b, err := json.Marshal(r)
			if err != nil {
				return fmt.Errorf("encode record: %w", err)
			}
			lines = append(append(lines, b...), '\n')
		}
	}
	if j.f != nil {
		if _, err := j.f.Write(lines); err != nil {
			return fmt.Errorf("append to data file: %w", err)
		}
	}
	for _, r := range rs {
		j.add(*r)
	}
	return nil
}

// list returns the executions matching f in sequence order.
func (j *journal) list(f Filter) []Execution {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := []Execution{}
	switch {
	case f.Key != "":
		for _, i := range j.byKey[f.Key] {
			if f.UserID == 0 || j.execs[i].UserID == f.UserID {
				out = append(out, j.execs[i])
			}
		}
	case f.UserID != 0:
		for _, i := range j.byUser[f.UserID] {
			out = append(out, j.execs[i])
		}
	default:
		// Execution n is j.execs[n-1]: the ones after AfterSeq are a tail.
		from := min(max(f.AfterSeq, 0), int64(len(j.execs)))
		return append(out, j.execs[from:]...)
	}
	if f.AfterSeq > 0 {
		kept := out[:0]
		for _, e := range out {
			if e.Seq > f.AfterSeq {
				kept = append(kept, e)
			}
		}
		out = kept
	}
	return out
}

// count returns how many executions are recorded.
func (j *journal) count() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.execs)
}

// close closes the data file.
func (j *journal) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}
