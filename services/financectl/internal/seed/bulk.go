package seed

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/finsvc/finance/pkg/payment"
)

// bulkMerchants are the merchants seeded debits pay: the demo merchants
// other than Pleo, which only tops up.
var bulkMerchants = func() []Merchant {
	var ms []Merchant
	for _, m := range DemoMerchants() {
		if m.ID != PleoID {
			ms = append(ms, m)
		}
	}
	return ms
}()

// seededPayment is one succeeded payment of a seeded user's history.
type seededPayment struct {
	id         int64
	uid        uuid.UUID
	userID     int64
	seq        int64 // the user's user_seq of its one transition, 1..M
	merchantID int64
	amount     int64
	key        string
	at         time.Time
}

// seededUser is one user to create: its wallet as it ends and its history.
type seededUser struct {
	id       int64
	balance  int64
	payments []seededPayment
}

// history returns user u's seeded history of m payments ending at end: a
// starting balance from Pleo (the only payment when m is 1, as the seed
// always made), then debits to the demo merchants and now and then a
// top-up. It is deterministic per user (same ids, amounts and times on
// every run), and the running balance never goes below zero, so every
// debit was affordable when it was made. Payment k is made (m-k) hours
// before end, less a per-user offset, so feeds interleave in time.
func history(u, m, balance int64, end time.Time) seededUser {
	su := seededUser{id: u}
	if balance == 0 {
		return su // a wallet without entries
	}
	r := rand.New(rand.NewPCG(uint64(u), 0x5eed))
	offset := time.Duration(uint64(u)%3600) * time.Second
	su.payments = make([]seededPayment, 0, m)
	running := int64(0)
	for k := int64(1); k <= m; k++ {
		p := seededPayment{userID: u, seq: k, at: end.Add(-time.Duration(m-k)*time.Hour - offset)}
		switch {
		case k == 1:
			p.merchantID, p.amount, p.key = PleoID, balance, fmt.Sprintf("seed-%d", u)
		case r.IntN(5) == 0 || running < 100:
			p.merchantID, p.amount = PleoID, 1000+100*r.Int64N(91) // 1,000..10,000
		default:
			mer := bulkMerchants[r.IntN(len(bulkMerchants))]
			p.merchantID, p.amount = mer.ID, -(1 + r.Int64N(min(running, 5000)))
		}
		if k > 1 {
			p.key = fmt.Sprintf("seed-%d-%d", u, k)
		}
		running += p.amount
		su.payments = append(su.payments, p)
	}
	su.balance = running
	return su
}

// copyBatch writes the users lo..hi that have no wallet yet, each with m
// payments, in tx with COPY: wallets, payments (ids reserved from the
// payments' identity sequence first, so that entries and transitions can
// name them), settled entries and transitions. It returns how many users it
// created and how many entries it wrote.
//
// With skipFKs, the batch's transaction runs with session_replication_role
// replica, which skips the row-by-row foreign key checks (four times the
// speed): every row it writes references either a row written in the same
// transaction (the wallets, the payments under their reserved ids) or a
// merchant it locks FOR KEY SHARE first, exactly what the checks would do,
// so no reference can dangle. Only a superuser may do it.
func copyBatch(ctx context.Context, tx pgx.Tx, lo, hi, m, balance int64, end time.Time, skipFKs bool) (users, entries int64, err error) {
	if skipFKs {
		ids := make([]int64, 0, len(bulkMerchants)+1)
		ids = append(ids, PleoID)
		if m > 1 {
			for _, mer := range bulkMerchants {
				ids = append(ids, mer.ID)
			}
		}
		var found int
		if err := tx.QueryRow(ctx, `WITH l AS (SELECT id FROM merchants WHERE id = ANY($1) FOR KEY SHARE) SELECT count(*) FROM l`, ids).Scan(&found); err != nil {
			return 0, 0, fmt.Errorf("lock merchants: %w", err)
		}
		if found != len(ids) {
			return 0, 0, fmt.Errorf("lock merchants: %d of the seed's %d merchants exist", found, len(ids))
		}
		if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
			return 0, 0, fmt.Errorf("skip foreign key checks: %w", err)
		}
	}
	rows, _ := tx.Query(ctx, `SELECT user_id FROM wallets WHERE user_id BETWEEN $1 AND $2 ORDER BY user_id`, lo, hi)
	existing, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return 0, 0, fmt.Errorf("read existing wallets %d..%d: %w", lo, hi, err)
	}
	var todo []seededUser
	var n int64
	for u := lo; ; u++ {
		if _, found := slices.BinarySearch(existing, u); !found {
			su := history(u, m, balance, end)
			n += int64(len(su.payments))
			todo = append(todo, su)
		}
		if u == hi { // hi may be the largest int64
			break
		}
	}
	if len(todo) == 0 {
		return 0, 0, nil
	}
	if n > 0 {
		rows, _ := tx.Query(ctx, `SELECT nextval(pg_get_serial_sequence('payments', 'id')) FROM generate_series(1, $1) ORDER BY 1`, n)
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return 0, 0, fmt.Errorf("reserve %d payment ids: %w", n, err)
		}
		i := 0
		for _, su := range todo {
			for j := range su.payments {
				su.payments[j].id, su.payments[j].uid = ids[i], payment.NewUID()
				i++
			}
		}
	}

	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"wallets"},
		[]string{"user_id", "balance", "held", "event_seq", "created_at", "updated_at"},
		walletRows(todo, end)); err != nil {
		return 0, 0, fmt.Errorf("copy wallets: %w", err)
	}
	if n == 0 {
		return int64(len(todo)), 0, nil
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"payments"},
		[]string{"id", "uid", "user_id", "merchant_id", "amount", "status", "idempotency_key", "request_hash", "source", "created_at", "updated_at"},
		paymentRows(todo, func(p *seededPayment, row []any) []any {
			return append(row, p.id, p.uid, p.userID, p.merchantID, p.amount, "succeeded", p.key,
				payment.RequestHash(p.userID, p.merchantID, p.amount), "seed", p.at, p.at)
		})); err != nil {
		return 0, 0, fmt.Errorf("copy payments: %w", err)
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"entries"},
		[]string{"user_id", "payment_id", "merchant_id", "amount", "occurred_at", "settled_at"},
		paymentRows(todo, func(p *seededPayment, row []any) []any {
			return append(row, p.userID, p.id, p.merchantID, p.amount, p.at, p.at)
		})); err != nil {
		return 0, 0, fmt.Errorf("copy entries: %w", err)
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"payment_transitions"},
		[]string{"payment_id", "user_id", "user_seq", "from_status", "to_status", "actor", "reason", "created_at"},
		paymentRows(todo, func(p *seededPayment, row []any) []any {
			reason := "seeded history"
			if p.seq == 1 {
				reason = "starting balance"
			}
			return append(row, p.id, p.userID, p.seq, "", "succeeded", Actor, reason, p.at)
		})); err != nil {
		return 0, 0, fmt.Errorf("copy transitions: %w", err)
	}
	return int64(len(todo)), n, nil
}

// walletRows is the COPY source of the users' wallets: the balance their
// history ends with, nothing held, event_seq at the last user_seq.
func walletRows(us []seededUser, end time.Time) pgx.CopyFromSource {
	i := -1
	row := make([]any, 0, 6)
	return &copySource{
		next: func() bool { i++; return i < len(us) },
		values: func() []any {
			su := us[i]
			created, updated := end, end
			if len(su.payments) > 0 {
				created, updated = su.payments[0].at, su.payments[len(su.payments)-1].at
			}
			return append(row[:0], su.id, su.balance, int64(0), int64(len(su.payments)), created, updated)
		},
	}
}

// paymentRows is a COPY source with one row per seeded payment, made by
// fill, in user and then user_seq order (the order entry ids follow, and
// so the feed's).
func paymentRows(us []seededUser, fill func(p *seededPayment, row []any) []any) pgx.CopyFromSource {
	u, k := 0, -1
	row := make([]any, 0, 12)
	return &copySource{
		next: func() bool {
			k++
			for u < len(us) && k >= len(us[u].payments) {
				u, k = u+1, 0
			}
			return u < len(us)
		},
		values: func() []any { return fill(&us[u].payments[k], row[:0]) },
	}
}

// copySource adapts two closures to pgx.CopyFromSource. pgx encodes each
// row before asking for the next, so values may reuse its slice.
type copySource struct {
	next   func() bool
	values func() []any
}

func (s *copySource) Next() bool             { return s.next() }
func (s *copySource) Values() ([]any, error) { return s.values(), nil }
func (s *copySource) Err() error             { return nil }
