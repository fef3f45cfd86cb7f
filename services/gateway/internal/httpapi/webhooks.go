package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/webhook"
)

// The webhook endpoints API (issue 15). An admin manages every endpoint
// and may leave user_id empty (every user's events); a user manages only
// its own, whose user filter is always itself.

// typeInvalidWebhookEndpoint is a 422 for an endpoint that cannot be stored:
// an invalid, non-https or private URL, an unknown event type, an oversized
// description. Nothing is stored.
const typeInvalidWebhookEndpoint = "invalid-webhook-endpoint"

// DefaultSecretOverlap is how long the previous secret still signs after a
// rotation, unless the request says otherwise.
const DefaultSecretOverlap = 24 * time.Hour

// maxSecretOverlap bounds a rotation's overlap.
const maxSecretOverlap = 7 * 24 * time.Hour

func (a *api) webhookRoutes(g *gin.RouterGroup) {
	g.POST("/v1/webhooks/endpoints", a.handle(a.createWebhookEndpoint))
	g.GET("/v1/webhooks/endpoints", a.handle(a.listWebhookEndpoints))
	g.GET("/v1/webhooks/endpoints/:id", a.handle(a.getWebhookEndpoint))
	g.PATCH("/v1/webhooks/endpoints/:id", a.handle(a.patchWebhookEndpoint))
	g.DELETE("/v1/webhooks/endpoints/:id", a.handle(a.deleteWebhookEndpoint))
	g.POST("/v1/webhooks/endpoints/:id/rotate-secret", a.handle(a.rotateWebhookSecret))
	g.GET("/v1/webhooks/endpoints/:id/attempts", a.handle(a.listWebhookAttempts))
	g.POST("/v1/webhooks/endpoints/:id/messages/:event_id/resend", a.handle(a.resendWebhookMessage))
	g.POST("/v1/webhooks/endpoints/:id/recover", a.handle(a.recoverWebhookMessages))
}

func webhooksDisabled() error {
	return &apiError{http.StatusServiceUnavailable, typeInternal, "Webhooks disabled", "this gateway has no webhook store"}
}

func invalidEndpoint(err error) error {
	return &apiError{http.StatusUnprocessableEntity, typeInvalidWebhookEndpoint, "Invalid webhook endpoint", err.Error()}
}

// endpointRequest is the body of POST (all fields) and PATCH (those sent).
type endpointRequest struct {
	URL         *string   `json:"url"`
	EventTypes  *[]string `json:"event_types"`
	UserID      *int64    `json:"user_id"`
	Description *string   `json:"description"`
	Enabled     *bool     `json:"enabled"`
}

const endpointFields = "url, event_types, user_id, description and enabled"

// createWebhookEndpoint is POST /v1/webhooks/endpoints: 201 with the
// endpoint and its secret, shown this once.
func (a *api) createWebhookEndpoint(c *gin.Context) error {
	if a.webhooks == nil {
		return webhooksDisabled()
	}
	p, _ := principal(c)
	sp, err := a.endpointSpec(c, p, nil)
	if err != nil {
		return err
	}
	e, err := a.webhooks.Create(c.Request.Context(), sp)
	if err != nil {
		return err
	}
	c.Header("Location", "/v1/webhooks/endpoints/"+e.ID.String())
	writeJSON(c, http.StatusCreated, e)
	return nil
}

// endpointSpec reads the body of a create (stored nil) or of a patch of
// stored, and returns the spec to store, validated: for a create, the
// fields sent, the user filter p's own unless p is an admin; for a patch,
// stored with the fields sent in place of its own (user_id cannot change).
// Every refusal is a 4xx.
func (a *api) endpointSpec(c *gin.Context, p auth.Principal, stored *webhook.Endpoint) (webhook.Spec, error) {
	var req endpointRequest
	if err := decodeJSON(c, &req, endpointFields); err != nil {
		return webhook.Spec{}, err
	}
	var sp webhook.Spec
	if stored == nil {
		if req.URL == nil {
			return webhook.Spec{}, invalidEndpoint(errors.New("url is required"))
		}
		sp = webhook.Spec{Enabled: true, CreatedBy: subject(p)}
		switch {
		case p.Admin:
			sp.UserID = req.UserID
		case req.UserID != nil && *req.UserID != p.UserID:
			return webhook.Spec{}, forbidden(fmt.Sprintf("this token may only subscribe to the events of user %d", p.UserID))
		default:
			uid := p.UserID
			sp.UserID = &uid
		}
	} else {
		if req.UserID != nil && (stored.UserID == nil || *req.UserID != *stored.UserID) {
			return webhook.Spec{}, invalidEndpoint(errors.New("user_id cannot change: delete the endpoint and create another"))
		}
		sp = webhook.Spec{URL: stored.URL, EventTypes: stored.EventTypes, UserID: stored.UserID,
			Description: stored.Description, Enabled: stored.Enabled}
	}
	if req.URL != nil {
		sp.URL = *req.URL
	}
	if req.EventTypes != nil {
		sp.EventTypes = *req.EventTypes
	}
	if req.Description != nil {
		sp.Description = *req.Description
	}
	if req.Enabled != nil {
		sp.Enabled = *req.Enabled
	}
	if err := a.validateEndpoint(c.Request.Context(), sp); err != nil {
		return webhook.Spec{}, err
	}
	return sp, nil
}

// listWebhookEndpoints is GET /v1/webhooks/endpoints: a user's own; an
// admin's every endpoint, or one user's with ?user_id=.
func (a *api) listWebhookEndpoints(c *gin.Context) error {
	if a.webhooks == nil {
		return webhooksDisabled()
	}
	p, _ := principal(c)
	var user *int64
	if raw, ok := c.GetQuery("user_id"); ok {
		id, err := parseID(raw, "user_id")
		if err != nil {
			return err
		}
		if !p.CanActFor(id) {
			return forbidden(fmt.Sprintf("this token may only list the endpoints of user %d", p.UserID))
		}
		user = &id
	} else if !p.Admin {
		user = &p.UserID
	}
	eps, err := a.webhooks.List(c.Request.Context(), user)
	if err != nil {
		return err
	}
	writeJSON(c, http.StatusOK, gin.H{"endpoints": eps})
	return nil
}

// validateEndpoint checks sp under the webhook policy, and that its
// description holds no NUL, which PostgreSQL's text cannot store (the
// insert failed: a 500).
func (a *api) validateEndpoint(ctx context.Context, sp webhook.Spec) error {
	err := a.webhookPolicy.Validate(ctx, sp)
	if strings.ContainsRune(sp.Description, 0) {
		err = errors.Join(err, errors.New("description must not contain NUL (U+0000)"))
	}
	if err != nil {
		return invalidEndpoint(err)
	}
	return nil
}

// checkEventID refuses an event id ("<payment_id>:<status>") that no event
// has and PostgreSQL's text cannot hold (NUL, invalid UTF-8): as a query
// argument it was a 500.
func checkEventID(name, id string) error {
	if !utf8.ValidString(id) || strings.ContainsFunc(id, unicode.IsControl) {
		return invalid(fmt.Sprintf("%s %q is no event id; event ids look like 1234:succeeded", name, id))
	}
	return nil
}

// endpointFor loads the :id endpoint if the token may manage it; another
// user's endpoint is a 404, as if it did not exist.
func (a *api) endpointFor(c *gin.Context) (webhook.Endpoint, error) {
	if a.webhooks == nil {
		return webhook.Endpoint{}, webhooksDisabled()
	}
	id, err := endpointID(c.Param("id"))
	if err != nil {
		return webhook.Endpoint{}, err
	}
	e, err := a.webhooks.Get(c.Request.Context(), id)
	if errors.Is(err, webhook.ErrNotFound) {
		return e, notFound("no such webhook endpoint")
	}
	if err != nil {
		return e, err
	}
	if p, _ := principal(c); !p.Admin && (e.UserID == nil || *e.UserID != p.UserID) {
		return e, notFound("no such webhook endpoint")
	}
	return e, nil
}

// endpointID reads the {id} of the endpoint routes: one that is no uuid
// names no endpoint, a 404.
func endpointID(raw string) (uuid.UUID, error) {
	id, err := uuid.Parse(raw)
	if err != nil {
		return uuid.UUID{}, notFound("no such webhook endpoint")
	}
	return id, nil
}

// getWebhookEndpoint is GET /v1/webhooks/endpoints/{id}.
func (a *api) getWebhookEndpoint(c *gin.Context) error {
	e, err := a.endpointFor(c)
	if err != nil {
		return err
	}
	writeJSON(c, http.StatusOK, e)
	return nil
}

// patchWebhookEndpoint is PATCH /v1/webhooks/endpoints/{id}: the fields
// sent replace the stored ones; user_id cannot change.
func (a *api) patchWebhookEndpoint(c *gin.Context) error {
	e, err := a.endpointFor(c)
	if err != nil {
		return err
	}
	p, _ := principal(c)
	sp, err := a.endpointSpec(c, p, &e)
	if err != nil {
		return err
	}
	up, err := a.webhooks.Update(c.Request.Context(), e.ID, sp)
	if err != nil {
		return err
	}
	writeJSON(c, http.StatusOK, up)
	return nil
}

// deleteWebhookEndpoint is DELETE /v1/webhooks/endpoints/{id}: the
// endpoint goes with its queue and delivery log.
func (a *api) deleteWebhookEndpoint(c *gin.Context) error {
	e, err := a.endpointFor(c)
	if err != nil {
		return err
	}
	if err := a.webhooks.Delete(c.Request.Context(), e.ID); err != nil && !errors.Is(err, webhook.ErrNotFound) {
		return err
	}
	c.Status(http.StatusNoContent)
	return nil
}

// rotateWebhookSecret is POST /v1/webhooks/endpoints/{id}/rotate-secret
// ?overlap=24h: a new secret, shown this once; the previous one also signs
// until the overlap ends.
func (a *api) rotateWebhookSecret(c *gin.Context) error {
	e, err := a.endpointFor(c)
	if err != nil {
		return err
	}
	overlap, err := parseOverlap(c)
	if err != nil {
		return err
	}
	rot, err := a.webhooks.RotateSecret(c.Request.Context(), e.ID, overlap)
	if err != nil {
		return err
	}
	writeJSON(c, http.StatusOK, rot)
	return nil
}

// parseOverlap reads a rotation's ?overlap=, DefaultSecretOverlap when
// absent.
func parseOverlap(c *gin.Context) (time.Duration, error) {
	raw, ok := c.GetQuery("overlap")
	if !ok {
		return DefaultSecretOverlap, nil
	}
	d, err := time.ParseDuration(raw)
	if err != nil || d < 0 || d > maxSecretOverlap {
		return 0, invalid(fmt.Sprintf("overlap=%q: want a duration from 0s to %s", raw, maxSecretOverlap))
	}
	return d, nil
}

// listWebhookAttempts is GET /v1/webhooks/endpoints/{id}/attempts
// ?event_id=&since=&until=&limit=: the delivery log, newest first.
func (a *api) listWebhookAttempts(c *gin.Context) error {
	e, err := a.endpointFor(c)
	if err != nil {
		return err
	}
	f, err := logFilter(c, e.ID)
	if err != nil {
		return err
	}
	log, err := a.webhooks.Log(c.Request.Context(), f)
	if err != nil {
		return err
	}
	writeJSON(c, http.StatusOK, gin.H{"attempts": log})
	return nil
}

// logFilter reads the delivery log's query parameters, for endpoint id.
func logFilter(c *gin.Context, id uuid.UUID) (webhook.LogFilter, error) {
	f := webhook.LogFilter{EndpointID: id, EventID: c.Query("event_id")}
	if err := checkEventID("event_id", f.EventID); err != nil {
		return f, err
	}
	var err error
	if f.Since, err = queryTime(c, "since"); err != nil {
		return f, err
	}
	if f.Until, err = queryTime(c, "until"); err != nil {
		return f, err
	}
	if f.Limit, err = queryLimit(c, 100, 1000); err != nil {
		return f, err
	}
	return f, nil
}

// resendWebhookMessage is POST /v1/webhooks/endpoints/{id}/messages/{event_id}/resend.
func (a *api) resendWebhookMessage(c *gin.Context) error {
	e, err := a.endpointFor(c)
	if err != nil {
		return err
	}
	if err := checkEventID("event id", c.Param("event_id")); err != nil {
		return err
	}
	switch err := a.webhooks.Resend(c.Request.Context(), e.ID, c.Param("event_id")); {
	case errors.Is(err, webhook.ErrNotFound):
		return notFound("this endpoint has no message of that event")
	case err != nil:
		return err
	}
	writeJSON(c, http.StatusAccepted, gin.H{"requeued": 1})
	return nil
}

// recoverWebhookMessages is POST /v1/webhooks/endpoints/{id}/recover?since=:
// every failed message of the endpoint queued since then is sent again.
func (a *api) recoverWebhookMessages(c *gin.Context) error {
	e, err := a.endpointFor(c)
	if err != nil {
		return err
	}
	since, err := recoverSince(c)
	if err != nil {
		return err
	}
	n, err := a.webhooks.Recover(c.Request.Context(), e.ID, since)
	if err != nil {
		return err
	}
	writeJSON(c, http.StatusAccepted, gin.H{"requeued": n})
	return nil
}

// recoverSince reads a recovery's ?since=, which is required.
func recoverSince(c *gin.Context) (time.Time, error) {
	since, err := queryTime(c, "since")
	if err != nil {
		return since, err
	}
	if since.IsZero() {
		return since, invalid("the query parameter since (RFC 3339) is required")
	}
	return since, nil
}

func queryTime(c *gin.Context, name string) (time.Time, error) {
	raw, ok := c.GetQuery(name)
	if !ok || raw == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, raw)
	if err != nil {
		return time.Time{}, invalid(fmt.Sprintf("%s=%q: want an RFC 3339 time", name, raw))
	}
	return t, nil
}

func subject(p auth.Principal) string {
	if p.Admin {
		return "admin:" + strconv.FormatInt(p.UserID, 10)
	}
	return strconv.FormatInt(p.UserID, 10)
}
