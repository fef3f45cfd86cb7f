package console

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/finsvc/finance/pkg/reconcile"
	"github.com/finsvc/finance/pkg/verify"
)

// maxUnknownListed bounds the unknown payments page.
const maxUnknownListed = 200

// unknownSQL lists unknown payments, oldest first, from the partial index
// payments_open_idx (status, updated_at); $1 = 0: every user.
const unknownSQL = `
SELECT id, uid, user_id, amount, created_at, updated_at, failure_reason
FROM payments
WHERE status = 'unknown' AND ($1::bigint = 0 OR user_id = $1)
ORDER BY updated_at, id
LIMIT $2`

// UnknownPayment is one row of the unknown payments page.
type UnknownPayment struct {
	ID        int64
	UID       *uuid.UUID
	UserID    int64
	Amount    int64
	CreatedAt time.Time
	// UnknownSince is when its status became unknown (updated_at).
	UnknownSince time.Time
	Reason       string
}

// unknownView is the unknown payments page's data.
type unknownView struct {
	Payments []UnknownPayment
	User     string
	// Resolvable is false without a processor URL; Why says so.
	Resolvable bool
	Why        string
	Limit      int
}

func (c *Console) resolvable() (bool, string) {
	if c.cfg.ProcessorURL == "" {
		return false, "resolving needs the processor's URL: set GATEWAY_PROCESSOR_URL on the gateway (make run sets it); " +
			"meanwhile financectl reconcile --processor-url URL does the same"
	}
	return true, ""
}

// UnknownPage is GET /console/unknown?user_id=: the unknown payments,
// oldest first, each with "resolve from processor".
func (c *Console) UnknownPage(w http.ResponseWriter, r *http.Request) {
	v := unknownView{Limit: maxUnknownListed}
	v.Resolvable, v.Why = c.resolvable()
	p := page{Title: "Unknown payments", Nav: "unknown", Data: &v}
	q := r.URL.Query()
	var user int64
	if s := q.Get("user_id"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			p.Error = fmt.Sprintf("bad filter: user_id must be a positive integer, got %q", s)
			c.render(w, r, http.StatusBadRequest, "unknown", p)
			return
		}
		user, v.User = n, s
	}
	for k := range q {
		if k != "user_id" {
			p.Error = fmt.Sprintf("bad filter: unknown parameter %q (allowed: user_id)", k)
			c.render(w, r, http.StatusBadRequest, "unknown", p)
			return
		}
	}
	rows, err := c.cfg.Pool.Query(r.Context(), unknownSQL, user, maxUnknownListed)
	if err == nil {
		v.Payments, err = pgx.CollectRows(rows, pgx.RowToStructByPos[UnknownPayment])
	}
	if err != nil {
		p.Error = "could not read the unknown payments: " + err.Error()
		c.render(w, r, http.StatusInternalServerError, "unknown", p)
		return
	}
	c.render(w, r, http.StatusOK, "unknown", p)
}

// reconciler returns a reconciler as financectl reconcile --api proposed
// builds it: the lookup by key and the statement of executions at the
// processor's URL, events emitted through the outbox.
func (c *Console) reconciler(cfg reconcile.Config) *reconcile.Reconciler {
	var stmt verify.Statement
	switch c.cfg.ProcessorStatementURL {
	case "":
		stmt = verify.NewHTTPStatement(c.cfg.ProcessorURL)
	case "none":
	default:
		stmt = &verify.HTTPStatement{URL: c.cfg.ProcessorStatementURL}
	}
	cfg.Emit = reconcile.EmitToOutbox
	return reconcile.New(c.cfg.ReconcilePool, stmt, &reconcile.HTTPLookup{BaseURL: c.cfg.ProcessorURL}, cfg)
}

// resolveView is the result of one "resolve from processor".
type resolveView struct {
	PaymentID  int64
	Resolution *reconcile.Resolution
	Report     string
}

// Resolve is POST /console/unknown/{id}/resolve: one reconciliation pass
// limited to that payment (reconcile.Config.PaymentID), with the
// reconciler's rules and audit (payment_transitions actor "reconciler").
// A payment that is not unknown is a 409, an id that is none a 400 or 404,
// and without a processor URL it is a 503 that says how to set one.
func (c *Console) Resolve(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		c.Fail(w, r, http.StatusBadRequest, "Bad payment id", fmt.Sprintf("payment id must be a positive integer, got %q", r.PathValue("id")))
		return
	}
	if ok, why := c.resolvable(); !ok {
		c.Fail(w, r, http.StatusServiceUnavailable, "Resolving is off", why)
		return
	}
	var status string
	err = c.cfg.Pool.QueryRow(r.Context(), `SELECT status FROM payments WHERE id = $1`, id).Scan(&status)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		c.Fail(w, r, http.StatusNotFound, "No such payment", fmt.Sprintf("no payment %d", id))
		return
	case err != nil:
		c.Fail(w, r, http.StatusInternalServerError, "Payment not read", err.Error())
		return
	case status != "unknown":
		c.Fail(w, r, http.StatusConflict, "Not unknown", fmt.Sprintf("payment %d is %s, not unknown: nothing to resolve", id, status))
		return
	}
	cfg := reconcile.DefaultConfig()
	cfg.PaymentID, cfg.StuckAfter = id, 0
	rep, err := c.reconciler(cfg).Run(r.Context())
	if err != nil {
		c.Fail(w, r, http.StatusBadGateway, "Not resolved", fmt.Sprintf("the reconciliation pass for payment %d failed, nothing changed: %v", id, err))
		return
	}
	v := resolveView{PaymentID: id}
	var b strings.Builder
	_ = rep.WriteText(&b)
	v.Report = b.String()
	p := page{Title: fmt.Sprintf("Payment %d", id), Nav: "unknown", Data: v}
	switch {
	case len(rep.Resolved) == 1:
		v.Resolution = &rep.Resolved[0]
		p.Notice = fmt.Sprintf("payment %d resolved: %s → %s", id, v.Resolution.From, v.Resolution.To)
	case len(rep.Unresolved) == 1:
		v.Resolution = &rep.Unresolved[0]
		p.Error = fmt.Sprintf("payment %d left unknown: %s", id, v.Resolution.Why)
	default:
		p.Error = fmt.Sprintf("payment %d was not unknown any more when the pass ran: nothing changed", id)
	}
	p.Data = v
	c.render(w, r, http.StatusOK, "resolve", p)
}

// reconcileView is the reconciliation page's data.
type reconcileView struct {
	Resolvable bool
	Why        string
	Report     *reconcile.Report
	Text       string
}

// ReconcilePage is GET /console/reconcile. Passes are not stored (the
// reconciler's job logs them, and exports their counts as metrics), so the
// page runs a dry-run pass on demand (POST).
func (c *Console) ReconcilePage(w http.ResponseWriter, r *http.Request) {
	v := reconcileView{}
	v.Resolvable, v.Why = c.resolvable()
	c.render(w, r, http.StatusOK, "reconcile", page{Title: "Reconciliation", Nav: "reconcile", Data: v})
}

// ReconcileDryRun is POST /console/reconcile: a whole reconciliation pass
// in dry-run mode, as financectl reconcile --dry-run: it decides and
// reports, and changes nothing.
func (c *Console) ReconcileDryRun(w http.ResponseWriter, r *http.Request) {
	v := reconcileView{}
	v.Resolvable, v.Why = c.resolvable()
	if !v.Resolvable {
		c.Fail(w, r, http.StatusServiceUnavailable, "Reconciliation is off", v.Why)
		return
	}
	cfg := reconcile.DefaultConfig()
	cfg.DryRun = true
	rep, err := c.reconciler(cfg).Run(r.Context())
	if err != nil {
		c.Fail(w, r, http.StatusBadGateway, "Pass failed", "the dry-run pass failed: "+err.Error())
		return
	}
	var b strings.Builder
	_ = rep.WriteText(&b)
	v.Report, v.Text = &rep, b.String()
	c.render(w, r, http.StatusOK, "reconcile", page{Title: "Reconciliation", Nav: "reconcile", Data: v,
		Notice: "dry run: nothing changed"})
}
