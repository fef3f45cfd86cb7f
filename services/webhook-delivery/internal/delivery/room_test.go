package delivery

import (
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"

	"github.com/finsvc/finance/pkg/testkit"
)

// TestRoomSkipsAHalfOpenEndpointWhileItsProbeIsInFlight: a half-open
// breaker lets one probe through, so while it is in flight the endpoint
// must not be claimed for (its lanes' heads would be leased and given back
// on every claim); once nothing is in flight the next probe may go.
func TestRoomSkipsAHalfOpenEndpointWhileItsProbeIsInFlight(t *testing.T) {
	t.Parallel()
	s := &Service{
		cfg:       Config{MaxInFlight: 16, EndpointConcurrency: 8, BreakerFailures: 2, BreakerOpen: time.Millisecond},
		logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		m:         newMetrics(prometheus.NewRegistry()),
		endpoints: map[uuid.UUID]*endpointState{},
	}
	id := uuid.New()
	st := s.endpoint(id)
	for range 2 {
		done, err := st.cb.Allow()
		if err != nil {
			t.Fatal(err)
		}
		done(errors.New("dead"))
	}
	testkit.Eventually(t, "the breaker half-opens", func() bool { return st.cb.State() == gobreaker.StateHalfOpen })

	st.inFlight = 1 // the probe
	if _, skip := s.room(); !slices.Contains(skip, id) {
		t.Errorf("half-open with a probe in flight: skip = %v, want it to hold %s", skip, id)
	}
	st.inFlight = 0
	if _, skip := s.room(); slices.Contains(skip, id) {
		t.Errorf("half-open with nothing in flight: skip = %v, want it without %s", skip, id)
	}
}
