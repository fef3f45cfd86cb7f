package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/finsvc/finance/pkg/ledger"
	"github.com/finsvc/finance/services/gateway/internal/cache"
	"github.com/finsvc/finance/services/gateway/internal/push"
	"github.com/finsvc/finance/services/gateway/internal/store"
)

// The read path of feeds and balances (docs/reads.md). Correctness first:
// every read starts with one primary-key read of the user's wallet on the
// PRIMARY (balance, held, event_seq). Then, cheapest first:
//
//  1. If-None-Match names the ETag of that event_seq: 304, nothing more.
//  2. The gateway's cache holds the document built at exactly that
//     event_seq: its bytes are sent as they are.
//  3. Otherwise the page is read (from the replica when one is set and has
//     replayed that event_seq, else from the primary), encoded, sent, and
//     kept in the cache tagged with the event_seq it was built at.
//
// A cold feed read skips the wallet read: with no replica, no
// If-None-Match and no cached page of the user that the wallet's event_seq
// could validate, steps 1 and 2 cannot answer, and the page's own
// statement on the primary reads the same wallet row in the same snapshot
// as its entries. One statement instead of two, and exactly as fresh.
//
// A client that saw its payment succeed was told so after the transaction
// that bumped its event_seq committed on the primary; every later read,
// on any gateway instance, compares with the primary's event_seq, so it
// can neither be served a cached document nor a replica page from before.
// Evictions by payments.events (wired in newAPI) only free memory early.

// readMetrics count how reads were answered.
type readMetrics struct {
	reads *prometheus.CounterVec
}

// readStats says what the store's shared statements of a kind did
// (store.ReadStats).
type readStats func(kind string) (statements, reads int64)

func newReadMetrics(reg prometheus.Registerer, stats readStats) *readMetrics {
	m := &readMetrics{reads: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_reads_total",
		Help: "Feed and balance reads by document (feed, balance) and what answered: not_modified, cache, " +
			"primary, replica, replica_behind (the replica had not replayed the user's event_seq; primary read), " +
			"replica_failed (primary read).",
	}, []string{"doc", "source"})}
	if reg != nil {
		reg.MustRegister(m.reads)
		registerSharedStatements(reg, stats)
	}
	return m
}

// registerSharedStatements exports how many statements the wallet reads
// and the cold feed pages took on the primary, and how many reads those
// statements answered: their ratio is the reads per statement (docs/reads.md).
func registerSharedStatements(reg prometheus.Registerer, stats readStats) {
	if stats == nil {
		stats = func(string) (int64, int64) { return 0, 0 }
	}
	for _, kind := range []string{"wallet", "feed"} {
		statements := func() float64 { n, _ := stats(kind); return float64(n) }
		reads := func() float64 { _, n := stats(kind); return float64(n) }
		labels := prometheus.Labels{"kind": kind}
		reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name:        "gateway_read_statements_total",
				Help:        "Statements the gateway ran on the primary for wallet reads and cold feed pages, by kind (wallet, feed); concurrent reads share one.",
				ConstLabels: labels,
			}, statements),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name:        "gateway_read_statement_reads_total",
				Help:        "Reads answered by gateway_read_statements_total's statements, by kind (wallet, feed).",
				ConstLabels: labels,
			}, reads),
		)
	}
}

func (m *readMetrics) count(doc, source string) { m.reads.WithLabelValues(doc, source).Inc() }

// evictOnEvents makes the hub's events evict their user's cached documents.
// The hub is fed by the gateway's one payments.events consumer.
func evictOnEvents(h *push.Hub, c *cache.Cache) {
	if h == nil || c == nil {
		return
	}
	h.Listen(func(ev ledger.Event) { c.Evict(ev.UserID) })
}

// serveFeedPage answers one feed page whose owner check and parameters
// are done. Only first pages (no cursor) are cached.
func (a *api) serveFeedPage(c *gin.Context, userID int64, limit int, before int64) error {
	ctx := c.Request.Context()
	first := before == 0
	if !a.store.HasReplica() && c.GetHeader("If-None-Match") == "" && (!first || !a.cache.HasFeed(userID, limit)) {
		return a.serveColdFeedPage(c, userID, limit, before)
	}
	w, err := a.store.Wallet(ctx, userID)
	if err != nil {
		return err
	}
	if notModified(c, feedETag(userID, w.EventSeq, limit, before)) {
		a.readMetrics.count("feed", "not_modified")
		return nil
	}
	if first {
		if body, ok := a.cache.Feed(userID, limit, w.EventSeq); ok {
			a.readMetrics.count("feed", "cache")
			writeBody(c, body)
			return nil
		}
	}
	feed, src, err := a.store.FeedPageAtLeast(ctx, userID, before, limit, w.EventSeq)
	if err != nil {
		return err
	}
	a.readMetrics.count("feed", string(src))
	// The page may be newer than the wallet read above (a change committed
	// in between); its own ETag is the one to answer with, and to match.
	if feed.EventSeq != w.EventSeq && notModified(c, feedETag(userID, feed.EventSeq, limit, before)) {
		return nil
	}
	body := encodeFeed(feed)
	if first {
		a.cache.PutFeed(userID, limit, feed.EventSeq, body)
	}
	writeBody(c, body)
	return nil
}

// serveColdFeedPage answers a feed page with one statement on the primary,
// when neither a 304 nor the cache could answer it (serveFeedPage).
func (a *api) serveColdFeedPage(c *gin.Context, userID int64, limit int, before int64) error {
	feed, err := a.store.FeedPage(c.Request.Context(), userID, before, limit)
	if err != nil {
		return err
	}
	a.readMetrics.count("feed", string(store.SourcePrimary))
	if notModified(c, feedETag(userID, feed.EventSeq, limit, before)) { // sets the ETag; no If-None-Match to match
		return nil
	}
	body := encodeFeed(feed)
	if before == 0 {
		a.cache.PutFeed(userID, limit, feed.EventSeq, body)
	}
	writeBody(c, body)
	return nil
}

// encodeFeed returns the feed document of feed, as writeJSON writes it.
func encodeFeed(feed store.Feed) []byte {
	out := feedJSON{
		UserID:           feed.UserID,
		Balance:          feed.Balance,
		AvailableBalance: feed.Balance - feed.Held,
		Transactions:     make([]transactionJSON, 0, len(feed.Entries)),
	}
	for _, e := range feed.Entries {
		out.Transactions = append(out.Transactions, transactionJSON{
			ID:        e.PaymentID,
			Name:      e.MerchantName,
			Amount:    e.Amount,
			Timestamp: e.OccurredAt.Unix(),
		})
	}
	if feed.More {
		out.NextCursor = encodeCursor(feed.Entries[len(feed.Entries)-1].ID)
	}
	return encodeJSON(out)
}

// balanceJSON is GET /v1/users/{user_id}/balance.
type balanceJSON struct {
	UserID int64 `json:"user_id"`
	// Balance is the settled balance; Held the holds of accepted debits
	// still open; Available = Balance - Held, what a new debit may spend.
	Balance   int64 `json:"balance"`
	Held      int64 `json:"held"`
	Available int64 `json:"available"`
}

// balanceETag is the ETag of a balance document.
func balanceETag(userID, eventSeq int64) string {
	return `"b` + strconv.FormatInt(userID, 10) + "." + strconv.FormatInt(eventSeq, 10) + `"`
}

// getBalance is GET /v1/users/{user_id}/balance. The balance comes with the
// primary's wallet row that every read starts with, so it never needs the
// replica; the cache saves the encoding.
func (a *api) getBalance(c *gin.Context) error {
	userID, err := parseID(c.Param("user_id"), "user_id")
	if err != nil {
		return err
	}
	if p, _ := principal(c); !p.CanActFor(userID) {
		return forbidden(fmt.Sprintf("this token may only read the balance of user %d", p.UserID))
	}
	w, err := a.store.Wallet(c.Request.Context(), userID)
	if err != nil {
		return err
	}
	if notModified(c, balanceETag(userID, w.EventSeq)) {
		a.readMetrics.count("balance", "not_modified")
		return nil
	}
	if body, ok := a.cache.Balance(userID, w.EventSeq); ok {
		a.readMetrics.count("balance", "cache")
		writeBody(c, body)
		return nil
	}
	a.readMetrics.count("balance", string(store.SourcePrimary))
	body := encodeJSON(balanceJSON{UserID: userID, Balance: w.Balance, Held: w.Held, Available: w.Balance - w.Held})
	a.cache.PutBalance(userID, w.EventSeq, body)
	writeBody(c, body)
	return nil
}

// encodeJSON encodes v exactly as writeJSON writes it.
func encodeJSON(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // the documents here always encode
	return buf.Bytes()
}

// writeBody answers 200 with an encoded JSON document.
func writeBody(c *gin.Context, body []byte) {
	c.Header("Content-Type", "application/json")
	c.Status(http.StatusOK)
	_, _ = c.Writer.Write(body) // the client is gone if this fails; nothing to do
}

// readStatsOf is st's ReadStats, or nil without a store (handler tests).
func readStatsOf(st *store.Store) readStats {
	if st == nil {
		return nil
	}
	return st.ReadStats
}
