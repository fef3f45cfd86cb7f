// Package store is the gateway's PostgreSQL access: it reads wallets, feeds
// and payments, and accepts new payments in one transaction together with
// their hold, audit row and outbox records. The SQL lives here, next to the
// only code that runs it.
package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/coalesce"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/ledger"
	"github.com/finsvc/finance/pkg/outbox"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/pkg/wire"
)

// Sentinel errors of the store. The HTTP layer maps each to one problem type.
var (
	// ErrWalletNotFound means the user has no wallet (an unknown user on a read).
	ErrWalletNotFound = errors.New("wallet not found")
	// ErrUnknownUser means a payment names a user that has no wallet.
	ErrUnknownUser = errors.New("unknown user")
	// ErrUnknownMerchant means a payment names a merchant that does not exist.
	ErrUnknownMerchant = errors.New("unknown merchant")
	// ErrInsufficientFunds means the available balance cannot cover the debit.
	ErrInsufficientFunds = errors.New("insufficient funds")
	// ErrIdempotencyKeyReuse means the user already sent a different request
	// with the same idempotency key.
	ErrIdempotencyKeyReuse = errors.New("idempotency key reused with a different request")
	// ErrPaymentNotFound means no payment has the requested id.
	ErrPaymentNotFound = errors.New("payment not found")
)

// Actor is how the gateway signs the audit rows it writes.
const Actor = "gateway"

// Store runs the gateway's queries on a pool.
type Store struct {
	pool *pgxpool.Pool
	// read serves feed pages when set (replica.go); nil reads the primary.
	read *pgxpool.Pool
	// wallets and feeds run Wallet's reads and FeedPage's pages on the
	// primary, concurrent ones in shared statements (shared.go).
	wallets *coalesce.Coalescer[int64, Wallet]
	feeds   *coalesce.Coalescer[feedRequest, Feed]
	// calls feeds the batch workers; nil until StartBatching.
	calls chan *acceptCall
	// testSignals tell tests what the batching did; off in production.
	testSignals testSignals
}

// New returns a Store over pool.
func New(pool *pgxpool.Pool) *Store {
	return &Store{
		pool:    pool,
		wallets: coalesce.New(sharedInFlight, sharedBatchMax, sharedReadTimeout, readWallets(pool)),
		feeds:   coalesce.New(sharedInFlight, sharedBatchMax, sharedReadTimeout, readFeedPages(pool)),
	}
}

// Ping checks that PostgreSQL answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.pool.Ping(ctx)
}

// Payment is a payment row as the API shows it.
type Payment struct {
	ID             int64          `db:"id"`
	UID            uuid.UUID      `db:"uid"`
	UserID         int64          `db:"user_id"`
	MerchantID     int64          `db:"merchant_id"`
	Amount         int64          `db:"amount"`
	Status         payment.Status `db:"status"`
	IdempotencyKey string         `db:"idempotency_key"`
	RequestHash    string         `db:"request_hash"`
	Hold           int64          `db:"hold"`
	FailureReason  string         `db:"failure_reason"`
	CreatedAt      time.Time      `db:"created_at"`
	UpdatedAt      time.Time      `db:"updated_at"`
}

const paymentColumns = `id, uid, user_id, merchant_id, amount, status, idempotency_key, request_hash,
	hold, failure_reason, created_at, updated_at`

// NewPayment is a payment request that passed validation.
type NewPayment struct {
	UserID         int64
	MerchantID     int64
	Amount         int64
	IdempotencyKey string
}

// AcceptPayment records p as accepted, in one transaction: the payment row,
// the hold on the wallet (a debit must fit the available balance), the
// payment_transitions audit row and two outbox records: the PaymentRequested
// for the dispatcher and the PaymentEvent of the payment's first transition
// (to accepted) for payments.events, so that every transition numbered with
// the user's event_seq is announced, the first one included.
//
// When the user already used p.IdempotencyKey, nothing is written: the
// earlier payment is returned, in its current state, with created=false if
// the request is the same, and ErrIdempotencyKeyReuse if it differs. Of
// concurrent requests with one key exactly one creates the payment; the
// others wait for it on the unique index and then return it.
//
// With batching started (StartBatching), concurrent calls share
// transactions; see batch.go. Otherwise each call is one transaction.
func (s *Store) AcceptPayment(ctx context.Context, p NewPayment) (got Payment, created bool, err error) {
	if s.calls != nil {
		return s.acceptBatched(ctx, p)
	}
	return s.acceptOne(ctx, p)
}

// acceptOne accepts p in a transaction of its own. It locks the wallet
// first, as a batch does, so that the two never wait for each other in
// opposite orders (wallet, then the idempotency key's index entry).
func (s *Store) acceptOne(ctx context.Context, p NewPayment) (got Payment, created bool, err error) {
	hash := payment.RequestHash(p.UserID, p.MerchantID, p.Amount)
	hold := payment.HoldFor(p.Amount)
	err = postgres.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		var locked int64
		err := tx.QueryRow(ctx, `SELECT user_id FROM wallets WHERE user_id = $1 FOR UPDATE`, p.UserID).Scan(&locked)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("user %d: %w", p.UserID, ErrUnknownUser)
		}
		if err != nil {
			return fmt.Errorf("lock wallet of user %d: %w", p.UserID, err)
		}
		rows, _ := tx.Query(ctx, `
			INSERT INTO payments (user_id, merchant_id, amount, status, idempotency_key, request_hash, hold, uid)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (user_id, idempotency_key) DO NOTHING
			RETURNING `+paymentColumns,
			p.UserID, p.MerchantID, p.Amount, payment.StatusAccepted, p.IdempotencyKey, hash, hold, payment.NewUID())
		inserted, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Payment])
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			// The key is taken (possibly by a request that committed while
			// this one waited on the index): answer with that payment.
			existing, err := paymentByKey(ctx, tx, p.UserID, p.IdempotencyKey)
			if err != nil {
				return err
			}
			if existing.RequestHash != hash {
				return fmt.Errorf("payment %d, key %q: %w", existing.ID, p.IdempotencyKey, ErrIdempotencyKeyReuse)
			}
			got = existing
			return nil
		case err != nil:
			return classifyInsert(err)
		}

		// Reserve the hold and take the user's next event number in one
		// statement; the row lock it takes orders the user's payments, and
		// the WHERE clause refuses a debit the available balance can't cover.
		// The wallet as it is after the hold goes into the accepted event.
		ev := ledger.Event{
			PaymentID:  inserted.ID,
			PaymentUID: inserted.UID,
			UserID:     inserted.UserID,
			MerchantID: inserted.MerchantID,
			Amount:     inserted.Amount,
			Status:     payment.StatusAccepted,
			OccurredAt: inserted.CreatedAt,
		}
		err = tx.QueryRow(ctx, `
			UPDATE wallets
			SET held = held + $2, event_seq = event_seq + 1, updated_at = now()
			WHERE user_id = $1 AND balance - held >= $2
			RETURNING balance, held, event_seq`, p.UserID, hold).Scan(&ev.Balance, &ev.Held, &ev.UserSeq)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("user %d, hold %d: %w", p.UserID, hold, ErrInsufficientFunds)
		}
		if err != nil {
			return fmt.Errorf("reserve hold for payment %d: %w", inserted.ID, err)
		}

		if _, err := tx.Exec(ctx, `
			INSERT INTO payment_transitions (payment_id, user_id, user_seq, from_status, to_status, actor)
			VALUES ($1, $2, $3, '', $4, $5)`,
			inserted.ID, p.UserID, ev.UserSeq, payment.StatusAccepted, Actor); err != nil {
			return fmt.Errorf("insert transition of payment %d: %w", inserted.ID, err)
		}

		payload, err := encodeRequested(inserted)
		if err != nil {
			return err
		}
		if err := outbox.Insert(ctx, tx, kafka.TopicRequested, kafka.UserKey(p.UserID), payload); err != nil {
			return fmt.Errorf("payment %d: %w", inserted.ID, err)
		}
		// Same topic, key and event id scheme as the status consumer's and
		// the reconciler's events. It takes the outbox id after the
		// request's, and the relay reads the outbox in id order.
		if payload, err = wire.EncodeEvent(ev); err != nil {
			return err
		}
		if err := outbox.Insert(ctx, tx, kafka.TopicEvents, kafka.UserKey(p.UserID), payload); err != nil {
			return fmt.Errorf("payment %d: %w", inserted.ID, err)
		}
		got, created = inserted, true
		return nil
	})
	if err != nil {
		return Payment{}, false, err
	}
	return got, created, nil
}

// encodeRequested returns the PaymentRequested payload of p, the
// dispatcher's input.
func encodeRequested(p Payment) ([]byte, error) {
	return wire.EncodeRequested(wire.Requested{
		PaymentID:      p.ID,
		PaymentUID:     p.UID.String(),
		UserID:         p.UserID,
		MerchantID:     p.MerchantID,
		Amount:         p.Amount,
		IdempotencyKey: p.IdempotencyKey,
		CreatedAt:      p.CreatedAt,
	})
}

// classifyInsert turns the foreign-key violations of a payment insert into
// the store's sentinels.
func classifyInsert(err error) error {
	var pgErr *pgconn.PgError
	if postgres.IsForeignKeyViolation(err) && errors.As(err, &pgErr) {
		switch pgErr.ConstraintName {
		case "payments_user_id_fkey":
			return fmt.Errorf("insert payment: %w", ErrUnknownUser)
		case "payments_merchant_id_fkey":
			return fmt.Errorf("insert payment: %w", ErrUnknownMerchant)
		}
	}
	return fmt.Errorf("insert payment: %w", err)
}

func paymentByKey(ctx context.Context, tx pgx.Tx, userID int64, key string) (Payment, error) {
	rows, _ := tx.Query(ctx, `SELECT `+paymentColumns+` FROM payments
		WHERE user_id = $1 AND idempotency_key = $2`, userID, key)
	p, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Payment])
	if err != nil {
		// Rows are never deleted, so a conflict without a row is a bug or
		// a concurrent schema change, not a client error.
		return Payment{}, fmt.Errorf("read payment of user %d with key %q: %w", userID, key, err)
	}
	return p, nil
}

// PaymentByID returns the payment with id, or ErrPaymentNotFound.
func (s *Store) PaymentByID(ctx context.Context, id int64) (Payment, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+paymentColumns+` FROM payments WHERE id = $1`, id)
	p, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Payment])
	if errors.Is(err, pgx.ErrNoRows) {
		return Payment{}, fmt.Errorf("payment %d: %w", id, ErrPaymentNotFound)
	}
	if err != nil {
		return Payment{}, fmt.Errorf("read payment %d: %w", id, err)
	}
	return p, nil
}

// PaymentByUID returns the payment with uid, or ErrPaymentNotFound.
func (s *Store) PaymentByUID(ctx context.Context, uid uuid.UUID) (Payment, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+paymentColumns+` FROM payments WHERE uid = $1`, uid)
	p, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Payment])
	if errors.Is(err, pgx.ErrNoRows) {
		return Payment{}, fmt.Errorf("payment %s: %w", uid, ErrPaymentNotFound)
	}
	if err != nil {
		return Payment{}, fmt.Errorf("read payment %s: %w", uid, err)
	}
	return p, nil
}

// Entry is one settled payment in a user's feed.
type Entry struct {
	ID           int64
	PaymentID    int64
	MerchantName string
	Amount       int64
	OccurredAt   time.Time
}

// Feed is one page of a user's settled payments, newest first, with the
// wallet as of the same snapshot.
type Feed struct {
	UserID  int64
	Balance int64
	Held    int64
	// EventSeq is the wallet's event_seq in the same snapshot: every change
	// of the balance, the holds or the user's payments bumps it, so the
	// page cannot differ while it stays the same (the feed's ETag).
	EventSeq int64
	Entries  []Entry
	// More reports whether entries older than the last one exist.
	More bool
}

// FeedSQL is the feed page's statement: $1 the user, $2 the entry id to
// start below, $3 the rows to read. It is exported for the test that
// requires its plan to be one range scan of entries_feed_covering_idx,
// with no sort and no sequential scan. The lateral subquery walks the
// user's entries in index order and stops after $3; the merchant's name is
// a lookup per row inside it, not a join above it, which would need a sort
// to restore the order. Rows come out in the index's order, newest first,
// and FeedPage does not rely on it.
const FeedSQL = `
		SELECT w.balance, w.held, w.event_seq, e.id, e.payment_id, e.name, e.amount, e.occurred_at
		FROM wallets w
		LEFT JOIN LATERAL (
			SELECT x.id, x.payment_id, x.amount, x.occurred_at,
			       (SELECT m.name FROM merchants m WHERE m.id = x.merchant_id) AS name
			FROM entries x
			WHERE x.user_id = w.user_id AND x.id < $2
			ORDER BY x.id DESC
			LIMIT $3
		) e ON true
		WHERE w.user_id = $1`

// FeedPage returns up to limit entries of userID's feed with ids below
// beforeID (0: from the newest), or ErrWalletNotFound. The wallet and the
// entries come from one statement, hence one snapshot, so the balance
// matches the entries; and one round trip, where a transaction would take
// four.
func (s *Store) FeedPage(ctx context.Context, userID, beforeID int64, limit int) (Feed, error) {
	if beforeID <= 0 {
		beforeID = math.MaxInt64
	}
	return s.feeds.Do(ctx, feedRequest{userID: userID, before: beforeID, limit: limit})
}

// feedRequest is one page FeedPage reads: the user's entries with ids below
// before, at most limit.
type feedRequest struct {
	userID, before int64
	limit          int
}

// FeedPagesSQL is FeedSQL for many pages at once, the shared statement of
// concurrent FeedPage calls: $1, $2 and $3 are the users, the entry ids to
// start below and the rows to read, one element per page; each row says
// its page's place in the arrays (i, from 1). Every page is the same range
// scan of entries_feed_covering_idx as FeedSQL's (TestFeedPlanIsIndexRangeScan).
const FeedPagesSQL = `
		SELECT q.i, w.balance, w.held, w.event_seq, e.id, e.payment_id, e.name, e.amount, e.occurred_at
		FROM unnest($1::bigint[], $2::bigint[], $3::int[]) WITH ORDINALITY AS q(user_id, before_id, lim, i)
		JOIN wallets w ON w.user_id = q.user_id
		LEFT JOIN LATERAL (
			SELECT x.id, x.payment_id, x.amount, x.occurred_at,
			       (SELECT m.name FROM merchants m WHERE m.id = x.merchant_id) AS name
			FROM entries x
			WHERE x.user_id = w.user_id AND x.id < q.before_id
			ORDER BY x.id DESC
			LIMIT q.lim
		) e ON true`

// readFeedPages is the cold feed pages' shared statement: FeedSQL for one
// page, FeedPagesSQL for more.
func readFeedPages(pool *pgxpool.Pool) func(ctx context.Context, reqs []feedRequest) ([]Feed, []error) {
	return func(ctx context.Context, reqs []feedRequest) ([]Feed, []error) {
		out, errs := make([]Feed, len(reqs)), make([]error, len(reqs))
		if len(reqs) == 1 {
			out[0], errs[0] = feedPage(ctx, pool, reqs[0].userID, reqs[0].before, reqs[0].limit)
			return out, errs
		}
		users, before, limits := make([]int64, len(reqs)), make([]int64, len(reqs)), make([]int32, len(reqs))
		for i, r := range reqs {
			out[i].Entries = make([]Entry, 0, r.limit+1) // at most limit+1 rows, no regrowth
			// One extra row tells whether another page exists, as in feedPage.
			users[i], before[i], limits[i] = r.userID, r.before, int32(r.limit+1)
		}
		found := make([]bool, len(reqs))
		rows, _ := pool.Query(ctx, FeedPagesSQL, users, before, limits)
		var (
			i   int64
			row feedRow
		)
		_, err := pgx.ForEachRow(rows, append([]any{&i}, row.dest()...), func() error {
			found[i-1] = true
			row.addTo(&out[i-1])
			return nil
		})
		for i, r := range reqs {
			switch {
			case err != nil:
				out[i], errs[i] = Feed{}, fmt.Errorf("read feed of user %d: %w", r.userID, err)
			case !found[i]:
				errs[i] = fmt.Errorf("user %d: %w", r.userID, ErrWalletNotFound)
			default:
				out[i].UserID = r.userID
				out[i].finish(r.limit)
			}
		}
		return out, errs
	}
}

// feedRow is one row of FeedSQL (or of FeedPagesSQL, after its page's
// place): the wallet, and one entry or, for a wallet without entries,
// NULLs.
type feedRow struct {
	balance, held, eventSeq int64
	// The entry's columns, NULL for a wallet without entries: pgtype's
	// value types scan without an allocation per column, as pointers would.
	id, paymentID, amount pgtype.Int8
	merchant              pgtype.Text
	occurred              pgtype.Timestamptz
}

// dest is what a row is scanned into.
func (r *feedRow) dest() []any {
	return []any{&r.balance, &r.held, &r.eventSeq, &r.id, &r.paymentID, &r.merchant, &r.amount, &r.occurred}
}

// addTo puts the row's wallet and entry into feed.
func (r *feedRow) addTo(feed *Feed) {
	feed.Balance, feed.Held, feed.EventSeq = r.balance, r.held, r.eventSeq
	if r.id.Valid {
		feed.Entries = append(feed.Entries, Entry{
			ID: r.id.Int64, PaymentID: r.paymentID.Int64, MerchantName: r.merchant.String, Amount: r.amount.Int64,
			OccurredAt: r.occurred.Time,
		})
	}
}

// finish puts the entries read (at most limit+1) newest first and keeps
// limit of them, noting whether more exist.
func (feed *Feed) finish(limit int) {
	// Newest first. The statement yields them so; a sorted slice costs one
	// pass to confirm.
	slices.SortFunc(feed.Entries, func(a, b Entry) int { return cmp.Compare(b.ID, a.ID) })
	if len(feed.Entries) > limit {
		feed.Entries, feed.More = feed.Entries[:limit], true
	}
}

// feedPage is FeedPage on pool, the primary's or a replica's.
func feedPage(ctx context.Context, pool *pgxpool.Pool, userID, beforeID int64, limit int) (Feed, error) {
	// One extra row tells whether another page exists (keyset pagination
	// on entries_feed_covering_idx; no OFFSET, no count). A wallet without
	// entries is one row of NULL entry columns.
	rows, _ := pool.Query(ctx, FeedSQL, userID, beforeID, limit+1)
	feed := Feed{UserID: userID, Entries: make([]Entry, 0, limit+1)}
	found := false
	var row feedRow
	_, err := pgx.ForEachRow(rows, row.dest(), func() error {
		found = true
		row.addTo(&feed)
		return nil
	})
	if err != nil {
		return Feed{}, fmt.Errorf("read feed of user %d: %w", userID, err)
	}
	if !found {
		return Feed{}, fmt.Errorf("user %d: %w", userID, ErrWalletNotFound)
	}
	feed.finish(limit)
	return feed, nil
}
