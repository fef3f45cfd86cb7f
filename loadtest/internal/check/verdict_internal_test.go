package check

import (
	"testing"

	"github.com/finsvc/finance/pkg/verify"
)

// TestEveryVerifyKindHasAVerdict keeps the mapping whole: an invariant
// pkg/verify adds must be given its verdict count here, not fall into the
// balance mismatch unseen.
func TestEveryVerifyKindHasAVerdict(t *testing.T) {
	t.Parallel()
	for _, k := range append(append([]verify.Kind{}, verify.LedgerKinds...), verify.StatementKinds...) {
		if verdictOf[k] == 0 {
			t.Errorf("pkg/verify's %s adds to no verdict count: add it to verdictOf", k)
		}
	}
}
