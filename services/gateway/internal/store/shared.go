package store

import "time"

// Reads in shared statements (docs/reads.md, "Reads in shared statements").
//
// Every feed or balance read asks the primary for the user's wallet row
// (Wallet), and a cold feed read for the user's first page (FeedPage).
// Concurrent reads of one kind share statements (pkg/coalesce). Alone, a
// read runs at once, exactly as a statement of its own would.
//
// Read-your-writes holds as before: a read only ever joins a statement
// that starts after the read arrived, so what it gets is at least as new
// as the primary's state at the time of the request.

const (
	// sharedBatchMax caps the reads of one statement.
	sharedBatchMax = 256
	// sharedInFlight is how many statements of one kind run at once. Two
	// keep a statement starting while another one's rows come back; more
	// would only make the batches smaller on a 2-core database.
	sharedInFlight = 2
	// sharedReadTimeout bounds one statement, whoever waits for it.
	sharedReadTimeout = 5 * time.Second
)

// ReadStats says how many statements the reads of kind ("wallet" or
// "feed") took, and how many reads they answered; 0, 0 for another kind.
func (s *Store) ReadStats(kind string) (statements, reads int64) {
	switch kind {
	case "wallet":
		return s.wallets.Stats()
	case "feed":
		return s.feeds.Stats()
	}
	return 0, 0
}
