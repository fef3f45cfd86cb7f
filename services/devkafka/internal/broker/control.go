package broker

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/finsvc/finance/services/devkafka/internal/kfake"
)

// faultKind is one family of broker failures the control API injects. Every
// error is one a Kafka client retries on its own: the faults test that our
// services survive a misbehaving broker, not that they give up.
type faultKind struct {
	keys []kmsg.Key
	// errs are the errors this kind may answer with; the first is the default.
	errs []*kerr.Error
}

var faultKinds = map[string]faultKind{
	"produce": {
		keys: []kmsg.Key{kmsg.Produce},
		// REQUEST_TIMED_OUT on produce is answered after the batch was
		// written, as a real broker may: the client's retry must be deduped.
		errs: []*kerr.Error{kerr.NotLeaderForPartition, kerr.RequestTimedOut},
	},
	"fetch": {
		keys: []kmsg.Key{kmsg.Fetch},
		errs: []*kerr.Error{kerr.NotLeaderForPartition, kerr.RequestTimedOut},
	},
	"commit": {
		keys: []kmsg.Key{kmsg.OffsetCommit, kmsg.TxnOffsetCommit},
		errs: []*kerr.Error{kerr.CoordinatorLoadInProgress, kerr.NotCoordinator},
	},
	"txn": {
		keys: []kmsg.Key{kmsg.AddPartitionsToTxn, kmsg.AddOffsetsToTxn, kmsg.EndTxn},
		errs: []*kerr.Error{kerr.ConcurrentTransactions},
	},
}

// FaultRequest is the body of POST /faults.
type FaultRequest struct {
	// Kind is produce, fetch, commit or txn.
	Kind string `json:"kind"`
	// Count is how many requests to fail; 0 means 1, -1 until DELETE /faults.
	Count int `json:"count"`
	// Error is the Kafka error name to answer with (e.g.
	// "NOT_LEADER_FOR_PARTITION"); empty picks the kind's default.
	Error string `json:"error,omitempty"`
}

// FaultStatus describes one installed fault.
type FaultStatus struct {
	ID    int    `json:"id"`
	Kind  string `json:"kind"`
	Error string `json:"error"`
	Count int    `json:"count"`
	// Hits is how many requests it has failed so far.
	Hits int `json:"hits"`
}

type installedFault struct {
	FaultStatus
	h *kfake.FaultHandle
}

// control is the fault-control HTTP API over a running cluster.
type control struct {
	cluster *kfake.Cluster
	brokers int
	logger  *slog.Logger

	mu     sync.Mutex
	nextID int
	faults []*installedFault
	moves  int
}

func newControl(c *kfake.Cluster, brokers int, logger *slog.Logger) *control {
	return &control{cluster: c, brokers: brokers, logger: logger}
}

// handler serves the control routes:
//
//	GET    /faults        the faults installed and their hits
//	POST   /faults        install one: {"kind":"produce","count":5}
//	DELETE /faults        remove every fault
//	POST   /leader-moves  shuffle partition leaders (needs >1 broker);
//	                      {"coordinators":true} also moves group and
//	                      transaction coordinators
//	GET    /healthz
func (c *control) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /faults", c.listFaults)
	mux.HandleFunc("POST /faults", c.addFault)
	mux.HandleFunc("DELETE /faults", c.removeFaults)
	mux.HandleFunc("POST /leader-moves", c.moveLeaders)
	return mux
}

func (c *control) listFaults(w http.ResponseWriter, _ *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]FaultStatus, 0, len(c.faults))
	for _, f := range c.faults {
		s := f.FaultStatus
		s.Hits = f.h.Hits()
		out = append(out, s)
	}
	writeJSON(w, http.StatusOK, map[string]any{"faults": out, "leader_moves": c.moves})
}

func (c *control) addFault(w http.ResponseWriter, r *http.Request) {
	var req FaultRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("body: %v", err))
		return
	}
	kind, ok := faultKinds[req.Kind]
	if !ok {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("kind %q: want produce, fetch, commit or txn", req.Kind))
		return
	}
	if req.Count < -1 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("count %d: want -1 (until removed), 0 (one) or more", req.Count))
		return
	}
	kerrV := kind.errs[0]
	if req.Error != "" {
		i := slices.IndexFunc(kind.errs, func(e *kerr.Error) bool { return e.Message == req.Error })
		if i < 0 {
			names := make([]string, len(kind.errs))
			for j, e := range kind.errs {
				names[j] = e.Message
			}
			writeError(w, http.StatusBadRequest, fmt.Sprintf("error %q for kind %s: want one of %v", req.Error, req.Kind, names))
			return
		}
		kerrV = kind.errs[i]
	}
	count := req.Count
	if count == 0 {
		count = 1
	}
	h := c.cluster.Fault(kfake.Fault{Keys: kind.keys, Err: kerrV, Count: count})
	c.mu.Lock()
	c.nextID++
	f := &installedFault{FaultStatus: FaultStatus{ID: c.nextID, Kind: req.Kind, Error: kerrV.Message, Count: count}, h: h}
	c.faults = append(c.faults, f)
	c.mu.Unlock()
	c.logger.InfoContext(r.Context(), "fault installed", "fault_id", f.ID, "kind", f.Kind, "error", f.Error, "count", f.Count)
	writeJSON(w, http.StatusCreated, f.FaultStatus)
}

func (c *control) removeFaults(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	faults := c.faults
	c.faults = nil
	c.mu.Unlock()
	hits := 0
	for _, f := range faults {
		f.h.Remove()
		hits += f.h.Hits()
	}
	c.logger.InfoContext(r.Context(), "faults removed", "faults", len(faults), "hits", hits)
	writeJSON(w, http.StatusOK, map[string]int{"removed": len(faults), "hits": hits})
}

// LeaderMoveRequest is the optional body of POST /leader-moves.
type LeaderMoveRequest struct {
	// Coordinators also moves group and transaction coordinators.
	Coordinators bool `json:"coordinators"`
}

func (c *control) moveLeaders(w http.ResponseWriter, r *http.Request) {
	if c.brokers < 2 {
		writeError(w, http.StatusConflict, "one broker: leaders cannot move (start with DEVKAFKA_BROKERS=3)")
		return
	}
	var req LeaderMoveRequest
	if r.ContentLength != 0 {
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("body: %v", err))
			return
		}
	}
	c.cluster.ShufflePartitionLeaders()
	if req.Coordinators {
		c.cluster.RehashCoordinators()
	}
	c.mu.Lock()
	c.moves++
	n := c.moves
	c.mu.Unlock()
	c.logger.InfoContext(r.Context(), "partition leaders shuffled", "coordinators", req.Coordinators, "leader_moves", n)
	writeJSON(w, http.StatusOK, map[string]any{"leader_moves": n, "coordinators": req.Coordinators})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
