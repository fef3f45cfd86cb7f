// Package console is the operator console the gateway serves under
// /console (issue 17, point 5): a small server-rendered app (html/template,
// htmx for the overview's polling, no build step) over what the operators'
// CLI does: live rates, backlog, utilization and drain estimate; dead
// letters to browse, inspect, dry-run and replay (paced and audited by
// pkg/dlq); unknown payments resolved from the processor (pkg/reconcile);
// a dry-run reconciliation report; the webhook delivery log.
//
// The package knows nothing of gin. The gateway's httpapi mounts its
// handlers as routes, authenticates the session cookie (SessionToken),
// refuses cross-origin writes (http.CrossOriginProtection), audits every
// POST in admin_audit, and hands the operator in the request's context
// (WithActor). Templates and static files are embedded.
//
// Vendored: web/static/htmx.min.js is htmx.org 2.0.11 from the npm registry
// (npm pack htmx.org@2, dist/htmx.min.js, unchanged), licence 0BSD
// (web/static/htmx.LICENSE).
package console

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/dlq"
	"github.com/finsvc/finance/pkg/webhook"
)

//go:embed web
var web embed.FS

// CookieName is the session cookie: the operator's admin token.
const CookieName = "finance_console"

// Config is what the console needs. Logger, Pool and Verify are required.
type Config struct {
	Logger *slog.Logger
	// Pool is the gateway's database: the overview's counts, the unknown
	// payments.
	Pool *pgxpool.Pool
	// ReconcilePool resolves unknown payments (it settles: it needs a role
	// that may write entries and balances, finance_reconciler, as
	// financectl reconcile has); nil uses Pool.
	ReconcilePool *pgxpool.Pool
	// Verify checks an "Authorization: Bearer <token>" header value, as the
	// API does.
	Verify func(header string) (auth.Principal, error)
	// DLQ serves the dead-letter pages; nil: they say why they are off.
	DLQ *dlq.Operator
	// Webhooks serves the delivery log; nil: the page says it is off.
	Webhooks *webhook.Store
	// ProcessorURL is the processor's base URL (lookup by key, and its
	// statement at /sim/executions for processor-sim); empty disables
	// "resolve from processor" and the reconciliation report.
	ProcessorURL string
	// ProcessorStatementURL overrides the statement's URL.
	ProcessorStatementURL string
	// RateLimit is the processor's global limit L, payments per second
	// (PROCESSOR_RATE_LIMIT of the dispatchers); 0: utilization and the
	// drain estimate are unknown.
	RateLimit float64
	// InsecureCookie drops the cookie's Secure flag (dev mode over http).
	InsecureCookie bool
	// StatsTTL is how long the overview's numbers are reused;
	// DefaultStatsTTL when zero.
	StatsTTL time.Duration
}

// Console serves the pages. It is safe for concurrent use.
type Console struct {
	cfg    Config
	pages  map[string]*template.Template
	static http.Handler
	stats  *stats
}

// The pages, each its file in web/templates with layout.html.
var pageNames = []string{"login", "overview", "dlq", "letter", "replay", "unknown", "resolve", "reconcile", "webhooks", "error"}

// New parses the embedded templates and returns the console.
func New(cfg Config) (*Console, error) {
	if cfg.ReconcilePool == nil {
		cfg.ReconcilePool = cfg.Pool
	}
	if cfg.StatsTTL <= 0 {
		cfg.StatsTTL = DefaultStatsTTL
	}
	c := &Console{cfg: cfg, pages: map[string]*template.Template{}}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(web, "web/templates/layout.html", "web/templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", name, err)
		}
		c.pages[name] = t
	}
	static, err := fs.Sub(web, "web/static")
	if err != nil {
		return nil, err
	}
	c.static = http.StripPrefix("/console/static/", http.FileServerFS(static))
	c.stats = newStats(cfg.Pool, cfg.RateLimit, cfg.StatsTTL)
	return c, nil
}

var funcs = template.FuncMap{
	"time": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"join": strings.Join,
}

// actorKey carries the operator in a request's context.
type actorKey struct{}

// WithActor returns ctx carrying the authenticated operator, as the audit
// names them ("admin:<id>").
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

func actorOf(r *http.Request) string {
	a, _ := r.Context().Value(actorKey{}).(string)
	return a
}

// SessionToken is the admin token of r's session cookie, "" without one.
func SessionToken(r *http.Request) string {
	ck, err := r.Cookie(CookieName)
	if err != nil {
		return ""
	}
	return ck.Value
}

// page is what every template gets.
type page struct {
	Title  string
	Nav    string
	Actor  string
	Error  string // shown at the top, in red
	Notice string // shown at the top, in green
	Data   any
}

// render writes page name with status.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	p.Actor = actorOf(r)
	var b bytes.Buffer
	if err := c.pages[name].Execute(&b, p); err != nil {
		c.cfg.Logger.ErrorContext(r.Context(), "console template", "page", name, "err", err.Error())
		http.Error(w, "console: template error", http.StatusInternalServerError)
		return
	}
	writeHTML(w, status, b.Bytes())
}

// renderFragment writes one named template of page name, for htmx.
func (c *Console) renderFragment(w http.ResponseWriter, r *http.Request, name, fragment string, data any) {
	var b bytes.Buffer
	if err := c.pages[name].ExecuteTemplate(&b, fragment, data); err != nil {
		c.cfg.Logger.ErrorContext(r.Context(), "console template", "page", name, "fragment", fragment, "err", err.Error())
		http.Error(w, "console: template error", http.StatusInternalServerError)
		return
	}
	writeHTML(w, http.StatusOK, b.Bytes())
}

func writeHTML(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// Fail answers status with the error page: what went wrong, in words, and
// where to go from there. httpapi uses it for its refusals (401, 403,
// cross-origin) so that a browser gets a page, not problem+json.
func (c *Console) Fail(w http.ResponseWriter, r *http.Request, status int, title, detail string) {
	c.render(w, r, status, "error", page{Title: title, Error: detail, Data: status})
}

// Static serves /console/static/*: htmx and the stylesheet.
func (c *Console) Static(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=3600")
	c.static.ServeHTTP(w, r)
}

// LoginPage is GET /console/login.
func (c *Console) LoginPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "login", page{Title: "Sign in"})
}

// Login is POST /console/login: the pasted token is verified as the API
// verifies bearer tokens and must have the admin scope; it is then kept in
// the session cookie (HttpOnly, SameSite=Strict, Secure unless
// InsecureCookie, path /console). It returns the token's principal and
// true when the operator is signed in; otherwise it has answered.
func (c *Console) Login(w http.ResponseWriter, r *http.Request) (auth.Principal, bool) {
	tok := strings.TrimSpace(r.PostFormValue("token"))
	tok = strings.TrimPrefix(tok, "Bearer ")
	if tok == "" {
		c.render(w, r, http.StatusBadRequest, "login", page{Title: "Sign in", Error: "paste an admin token (financectl token --admin)"})
		return auth.Principal{}, false
	}
	p, err := c.cfg.Verify("Bearer " + tok)
	if err != nil {
		c.render(w, r, http.StatusUnauthorized, "login", page{Title: "Sign in", Error: "the token was refused: " + err.Error()})
		return auth.Principal{}, false
	}
	if !p.Admin {
		c.render(w, r, http.StatusForbidden, "login", page{Title: "Sign in",
			Error: "this token has no admin scope: the console needs an admin token (financectl token --admin)"})
		return p, false
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: tok, Path: "/console", HttpOnly: true,
		Secure: !c.cfg.InsecureCookie, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/console", http.StatusSeeOther)
	return p, true
}

// Logout is POST /console/logout: the cookie is cleared.
func (c *Console) Logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/console", MaxAge: -1, HttpOnly: true,
		Secure: !c.cfg.InsecureCookie, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/console/login", http.StatusSeeOther)
}
