package store

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

// planNode is a node of EXPLAIN (FORMAT JSON)'s plan tree.
type planNode struct {
	NodeType     string     `json:"Node Type"`
	RelationName string     `json:"Relation Name"`
	IndexName    string     `json:"Index Name"`
	IndexCond    string     `json:"Index Cond"`
	Plans        []planNode `json:"Plans"`
}

func (n planNode) walk(f func(planNode)) {
	f(n)
	for _, c := range n.Plans {
		c.walk(f)
	}
}

// TestFeedPlanIsIndexRangeScan requires the feed page to be one range scan
// of entries_feed_covering_idx over the user's entries, read from the index
// alone, with no sort and no sequential scan anywhere. The tables hold
// enough rows (2,000 wallets, 40,000 entries, 1,000 merchants) and are
// analyzed, so the planner has a real choice; enable_seqscan stays on. A
// plan that sorts, scans a table, or reads the old (user_id, id) index and
// then the heap fails it.
func TestFeedPlanIsIndexRangeScan(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := setup(t)
	for _, sql := range []string{
		`INSERT INTO merchants (id, name) SELECT g, 'merchant ' || g FROM generate_series(1, 1000) g ON CONFLICT (id) DO NOTHING`,
		`INSERT INTO wallets (user_id, event_seq) SELECT g, 20 FROM generate_series(1, 2000) g ON CONFLICT (user_id) DO NOTHING`,
		`INSERT INTO payments (id, user_id, merchant_id, amount, status, idempotency_key, request_hash, source)
		 SELECT g, 1 + g % 2000, 1 + g % 1000, -1 - g % 50, 'succeeded', 'k' || g, '', 'seed' FROM generate_series(1, 40000) g`,
		`INSERT INTO entries (user_id, payment_id, merchant_id, amount, occurred_at)
		 SELECT user_id, id, merchant_id, amount, created_at FROM payments ORDER BY id`,
		`VACUUM (ANALYZE) merchants, wallets, payments, entries`,
	} {
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	for _, tt := range []struct {
		name   string
		before int64
	}{
		{"first page", math.MaxInt64},
		{"page below a cursor", 20_000},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, stmt := range []struct {
				name string
				sql  string
				args []any
			}{
				{"FeedSQL", FeedSQL, []any{int64(1234), tt.before, 51}},
				{"FeedPagesSQL", FeedPagesSQL, []any{[]int64{1234, 77, 1999}, []int64{tt.before, tt.before, tt.before}, []int32{51, 51, 21}}},
			} {
				t.Run(stmt.name, func(t *testing.T) { requireRangeScan(t, pool, stmt.sql, stmt.args) })
			}
		})
	}
}

// requireRangeScan fails unless sql's plan reads entries by one range scan
// of entries_feed_covering_idx per page, from the index alone, with no sort
// and no sequential scan of entries (the shared statement may read the
// handful of wallets it names by whatever the planner likes).
func requireRangeScan(t *testing.T, pool *pgxpool.Pool, sql string, args []any) {
	t.Helper()
	ctx := context.Background()
	var raw string
	if err := pool.QueryRow(ctx, `EXPLAIN (FORMAT JSON) `+sql, args...).Scan(&raw); err != nil {
		t.Fatalf("explain: %v", err)
	}
	var plans []struct {
		Plan planNode `json:"Plan"`
	}
	if err := json.Unmarshal([]byte(raw), &plans); err != nil || len(plans) != 1 {
		t.Fatalf("decode plan: %v\n%s", err, raw)
	}
	var scans, problems []string
	plans[0].Plan.walk(func(n planNode) {
		switch {
		case strings.Contains(n.NodeType, "Sort"):
			problems = append(problems, n.NodeType)
		case n.NodeType == "Seq Scan" && n.RelationName != "wallets":
			problems = append(problems, "Seq Scan on "+n.RelationName)
		case n.RelationName == "entries":
			scans = append(scans, fmt.Sprintf("%s using %s (%s)", n.NodeType, n.IndexName, n.IndexCond))
			if n.NodeType != "Index Only Scan" || n.IndexName != "entries_feed_covering_idx" ||
				!strings.Contains(n.IndexCond, "user_id = ") || !strings.Contains(n.IndexCond, "id < ") {
				problems = append(problems, "entries read by "+scans[len(scans)-1])
			}
		}
	})
	if len(scans) != 1 {
		problems = append(problems, fmt.Sprintf("entries read by %d scan nodes, want one range scan: %v", len(scans), scans))
	}
	if len(problems) > 0 {
		t.Errorf("feed plan: %s\n%s", strings.Join(problems, "; "), raw)
	}
}
