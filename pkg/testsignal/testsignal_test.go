package testsignal_test

import (
	"testing"

	"github.com/finsvc/finance/pkg/testsignal"
)

func TestSignal(t *testing.T) {
	t.Parallel()
	var off testsignal.Signal[int]
	off.Signal(1) // a signal no test turned on does nothing, and never blocks

	var s testsignal.Signal[string]
	s.Init(t)
	go s.Signal("committed")
	if got := s.WaitOrTimeout(t); got != "committed" {
		t.Errorf("got %q, want committed", got)
	}
}
