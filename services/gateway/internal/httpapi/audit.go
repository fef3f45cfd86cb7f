package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/finsvc/finance/services/gateway/internal/store"
)

// auditTimeout bounds the audit row's insert, which runs after the answer.
const auditTimeout = 5 * time.Second

// audited reports whether a request on route (gin's full path) with method
// is an admin action: anything under /v1/admin, every change to a
// webhook endpoint (its secret, its URL, its deliveries), and every form
// the operator console posts.
func audited(method, route string) bool {
	switch {
	case strings.HasPrefix(route, "/v1/admin/"):
		return true
	case strings.HasPrefix(route, "/v1/webhooks/"):
		return method != http.MethodGet && method != http.MethodHead
	case route == "/console" || strings.HasPrefix(route, "/console/"):
		// Every console form: sign-in and out, replays, resolutions.
		return method == http.MethodPost
	}
	return false
}

// audit records admin actions, after the handler answered, with actor
// (the token's subject), action (method and route), target (the route's
// parameters, else the Location of what was created) and status; refused
// attempts (403) are recorded too. It sits after authenticate, so every
// request it sees has a principal. The row is one line in admin_audit and
// one "admin action" log line; when the insert fails, the log line says so
// at ERROR, carrying the same fields, so the action is never unrecorded.
func (a *api) audit(c *gin.Context) {
	route := c.FullPath()
	if !audited(c.Request.Method, route) {
		c.Next()
		return
	}
	c.Next()
	actor := "anonymous" // a console sign-in with a token that was refused
	if p, ok := principal(c); ok {
		actor = subject(p)
	}
	act := store.AdminAction{
		Actor:     actor,
		Action:    c.Request.Method + " " + route,
		Target:    auditTarget(c),
		Status:    c.Writer.Status(),
		RequestID: requestID(c),
	}
	attrs := []any{slog.String("actor", act.Actor), slog.String("action", act.Action),
		slog.String("target", act.Target), slog.Int("status", act.Status), slog.String("request_id", act.RequestID)}
	if a.store == nil {
		a.logger.InfoContext(c.Request.Context(), "admin action", attrs...)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Request.Context()), auditTimeout)
	defer cancel()
	if err := a.store.RecordAdminAction(ctx, act); err != nil {
		a.logger.ErrorContext(ctx, "admin action not recorded in admin_audit", append(attrs, slog.String("err", err.Error()))...)
		return
	}
	a.logger.InfoContext(ctx, "admin action", attrs...)
}

// auditTarget names what an action acted on: its route parameters
// ("id=...", "topic=... partition=... offset=..."), else the Location of
// what it created, else nothing (a replay's filter is in dlq_replays).
func auditTarget(c *gin.Context) string {
	if strings.HasPrefix(c.FullPath(), "/console/") {
		// A console form: its fields (a replay's address or filter), never
		// the sign-in's token.
		f := url.Values{}
		for k, v := range c.Request.PostForm {
			if k != "token" && len(v) > 0 && v[0] != "" {
				f[k] = v
			}
		}
		for _, p := range c.Params {
			f.Set(p.Key, p.Value)
		}
		return f.Encode()
	}
	if len(c.Params) > 0 {
		parts := make([]string, len(c.Params))
		for i, p := range c.Params {
			parts[i] = p.Key + "=" + storable(p.Value)
		}
		return strings.Join(parts, " ")
	}
	return c.Writer.Header().Get("Location")
}

// storable is s as admin_audit's text column can hold it: a path parameter
// with NUL or invalid UTF-8 (a hostile request's) is kept escaped, as Go
// quotes it, instead of failing the insert and going unrecorded.
func storable(s string) string {
	if utf8.ValidString(s) && !strings.ContainsRune(s, 0) {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}
