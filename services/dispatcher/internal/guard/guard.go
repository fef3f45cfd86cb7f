// Package guard decides, durably in PostgreSQL and before any processor
// call, whether the dispatcher may send a payment. One statement decides
// for every payment that asks at the same moment (pkg/coalesce: the
// payments of one fetch are dispatched together), each as if alone:
//
//   - a request whose payment id and uid the database does not hold was not
//     accepted by this database (a record left in Kafka from before a
//     restore, or from another database): Stale, never sent;
//   - a payment already succeeded or failed: Final, never sent again,
//     whatever replayed or rewound its record;
//   - with the proposed API, a payment that may have been sent before
//     (processing or unknown) and was accepted longer ago than the
//     processor keeps idempotency keys: KeyExpired, never sent again (its
//     key may be forgotten, so a second call could execute it twice);
//   - otherwise (accepted, processing, unknown) it may be sent. With the
//     processor's as-is API, which has no idempotency key, the same
//     statement also claims it (dispatch_claims): only the claimant sends
//     it, once ever; a payment claimed before may have been sent and is
//     Claimed, never sent again.
package guard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/coalesce"
	"github.com/finsvc/finance/pkg/payment"
)

// Verdict is what the guard decided for one payment.
type Verdict int

// The verdicts of Admit.
const (
	// Send: the payment is open and, with claims, claimed by this call.
	Send Verdict = iota + 1
	// Stale: the database holds no payment with this id and uid.
	Stale
	// Final: the payment already succeeded or failed.
	Final
	// Claimed: as-is API only; the payment was claimed before and may
	// have been sent.
	Claimed
	// KeyExpired: proposed API only; the payment is processing or unknown
	// (it may have been sent) and was accepted longer ago than the
	// processor keeps idempotency keys: a second call might not be a
	// replay.
	KeyExpired
)

// String returns the verdict's name, as used in metric labels and logs.
func (v Verdict) String() string {
	switch v {
	case Send:
		return "send"
	case Stale:
		return "stale"
	case Final:
		return "final"
	case Claimed:
		return "claimed"
	case KeyExpired:
		return "key_expired"
	default:
		return fmt.Sprintf("verdict(%d)", int(v))
	}
}

// Guard admits payments in the payments and dispatch_claims tables.
type Guard struct {
	pool *pgxpool.Pool
	by   string
	// claims: the as-is API; each admitted payment is claimed.
	claims bool
	// RetryFor bounds the time spent retrying a failing statement; zero
	// means 30s.
	RetryFor time.Duration
	// BackoffInitial and BackoffMax shape the backoff between tries; zero
	// means 50ms and 2s.
	BackoffInitial, BackoffMax time.Duration
	// KeyRetention is how long the processor keeps an idempotency key
	// after it settled a payment (PROCESSOR_KEY_RETENTION); zero means
	// 24h. Without claims (the proposed API), a payment that may have been
	// sent and was accepted longer ago is KeyExpired.
	KeyRetention time.Duration
	log          *slog.Logger
	// shared runs concurrent admissions in shared statements.
	shared *coalesce.Coalescer[admission, Verdict]
}

// admission is one payment asking to be sent.
type admission struct {
	id  int64
	uid uuid.UUID
}

const (
	// sharedInFlight is how many admission statements run at once: two
	// keep one starting while another's rows come back.
	sharedInFlight = 2
	// sharedBatchMax caps the payments of one statement.
	sharedBatchMax = 256
	// tryTimeout bounds one statement, so that a hung connection cannot
	// stall the payments waiting for it.
	tryTimeout = 5 * time.Second
)

// New returns a Guard reading pool's database on behalf of by (the
// replica's transactional id). claims is true for the as-is API.
func New(pool *pgxpool.Pool, by string, claims bool, logger *slog.Logger) *Guard {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := &Guard{pool: pool, by: by, claims: claims, log: logger}
	g.shared = coalesce.New(sharedInFlight, sharedBatchMax, tryTimeout, g.admitAll)
	return g
}

// admitSQL reads the payments by id and uid ($1, $2: arrays, no id twice)
// and, when $4 (claims) is true, claims those that are open, in one
// statement. It returns no row for a payment the database does not hold,
// else its id, status, whether it was accepted more than $5 microseconds
// ago (the processor's key retention, by the database's clock, which also
// set created_at), and whether this statement inserted its claim.
const admitSQL = `
WITH p AS (
    SELECT p.id, p.status, p.created_at < now() - $5::bigint * interval '1 microsecond' AS past_retention
    FROM unnest($1::bigint[], $2::uuid[]) AS r(id, uid)
    JOIN payments p ON p.id = r.id AND p.uid = r.uid
), claim AS (
    INSERT INTO dispatch_claims (payment_id, claimed_by)
    SELECT id, $3 FROM p WHERE $4 AND status NOT IN ('succeeded', 'failed')
    ORDER BY id -- claims taken in one order everywhere: two replicas never deadlock
    ON CONFLICT (payment_id) DO NOTHING
    RETURNING payment_id
)
SELECT p.id, p.status, p.past_retention, claim.payment_id IS NOT NULL
FROM p LEFT JOIN claim ON claim.payment_id = p.id`

// Admit decides whether payment id with uid may be sent. Failures are
// retried with backoff until RetryFor has passed or ctx ends; the error then
// means nothing is known, so the payment must not be sent.
func (g *Guard) Admit(ctx context.Context, id int64, uid uuid.UUID) (Verdict, error) {
	retryFor := g.RetryFor
	if retryFor <= 0 {
		retryFor = 30 * time.Second
	}
	initial, maxWait := g.BackoffInitial, g.BackoffMax
	if initial <= 0 {
		initial = 50 * time.Millisecond
	}
	if maxWait <= 0 {
		maxWait = 2 * time.Second
	}
	bo := backoff.WithContext(backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(initial),
		backoff.WithMaxInterval(maxWait),
		backoff.WithMultiplier(2),
		backoff.WithRandomizationFactor(0.5),
		backoff.WithMaxElapsedTime(retryFor),
	), ctx)
	tries := 0
	var v Verdict
	err := backoff.Retry(func() error {
		tries++
		var err error
		v, err = g.shared.Do(ctx, admission{id: id, uid: uid})
		if err != nil {
			g.log.WarnContext(ctx, "dispatch guard failed; retrying, the payment is not sent meanwhile",
				"payment_id", id, "payment_uid", uid, "try", tries, "err", err)
		}
		return err
	}, bo)
	if err != nil {
		if ctx.Err() != nil {
			err = errors.Join(err, ctx.Err())
		}
		return 0, fmt.Errorf("admit payment %d (%s) after %d tries: %w", id, uid, tries, err)
	}
	return v, nil
}

// admitAll decides for a batch of admissions, in order. A payment asked
// for twice goes in a later statement than its first time, so that each
// admission is decided as if alone (with claims, only the first may claim
// it). An error is every remaining admission's.
func (g *Guard) admitAll(ctx context.Context, reqs []admission) ([]Verdict, []error) {
	verdicts, errs := make([]Verdict, len(reqs)), make([]error, len(reqs))
	pending := make([]int, len(reqs)) // indexes into reqs not yet decided
	for i := range reqs {
		pending[i] = i
	}
	for len(pending) > 0 {
		var round, later []int
		seen := make(map[int64]bool, len(pending))
		for _, i := range pending {
			if seen[reqs[i].id] {
				later = append(later, i)
				continue
			}
			seen[reqs[i].id] = true
			round = append(round, i)
		}
		if err := g.admitRound(ctx, reqs, round, verdicts); err != nil {
			for _, i := range pending {
				errs[i] = err
			}
			return verdicts, errs
		}
		pending = later
	}
	return verdicts, errs
}

// admitRound decides reqs[i] for every i in round (no id twice) with one
// statement, into verdicts[i].
func (g *Guard) admitRound(ctx context.Context, reqs []admission, round []int, verdicts []Verdict) error {
	retention := g.KeyRetention
	if retention <= 0 {
		retention = payment.KeyRetention
	}
	ids := make([]int64, len(round))
	uids := make([]uuid.UUID, len(round))
	for k, i := range round {
		ids[k], uids[k] = reqs[i].id, reqs[i].uid
	}
	type row struct {
		status        payment.Status
		pastRetention bool
		claimed       bool
	}
	found := make(map[int64]row, len(round))
	rows, _ := g.pool.Query(ctx, admitSQL, ids, uids, g.by, g.claims, retention.Microseconds())
	var (
		id int64
		r  row
	)
	if _, err := pgx.ForEachRow(rows, []any{&id, &r.status, &r.pastRetention, &r.claimed}, func() error {
		found[id] = r
		return nil
	}); err != nil {
		return err
	}
	for _, i := range round {
		r, ok := found[reqs[i].id]
		if !ok {
			verdicts[i] = Stale
			continue
		}
		verdicts[i] = g.verdict(r.status, r.pastRetention, r.claimed)
	}
	return nil
}

// verdict decides for a payment the database holds.
func (g *Guard) verdict(status payment.Status, pastRetention, claimed bool) Verdict {
	switch {
	case status.Final():
		return Final
	case g.claims && !claimed:
		return Claimed
	case !g.claims && pastRetention && (status == payment.StatusProcessing || status == payment.StatusUnknown):
		// The key's retention runs from when the processor settled the
		// payment, which is after its acceptance: before created_at +
		// retention the key is surely kept, after it may be forgotten.
		// An accepted payment is still sent: as a rule it was never sent
		// (only a lost PROCESSING outcome hides an earlier call), and
		// holding back every old accepted payment would turn a backlog
		// older than the retention into unknowns.
		return KeyExpired
	default:
		return Send
	}
}

// Release deletes paymentID's claim, for a payment that was claimed but
// certainly never sent (the processor client returned ErrNotSent), so that
// its redelivery may send it. It is best effort: a claim left behind makes
// the redelivery unknown, never sends twice. Without claims it does nothing.
func (g *Guard) Release(ctx context.Context, paymentID int64) error {
	if !g.claims {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, err := g.pool.Exec(ctx, `DELETE FROM dispatch_claims WHERE payment_id = $1 AND claimed_by = $2`, paymentID, g.by)
	return err
}
