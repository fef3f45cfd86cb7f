package httpapi

import (
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/finsvc/finance/pkg/problem"
	"github.com/finsvc/finance/services/gateway/internal/console"
)

// consoleRoutes mounts the operator console (internal/console) under
// /console when Config.Console is set. Its pages are HTML, not the API:
// they are not in docs/openapi.yaml, and refusals are pages, not problems.
//
// Around every console route: the per-address rate limit, then
// http.CrossOriginProtection, which refuses a POST that the browser marks
// as cross-site (Sec-Fetch-Site) or whose Origin is not this host: that is
// the CSRF defence, with the session cookie's SameSite=Strict as a second
// one (a cross-site form post does not even carry the cookie). No form
// token is needed then, and there is no per-session state to keep.
// Signed-in routes then check the session cookie's admin token as the API
// checks bearer tokens, rate-limit per operator, and audit every POST in
// admin_audit (audit.go), refused ones too.
func (a *api) consoleRoutes(e *gin.Engine) {
	if a.console == nil {
		return
	}
	a.crossOrigin = http.NewCrossOriginProtection()
	pub := e.Group("/console", a.limitIP, a.consoleCrossOrigin, a.audit)
	pub.GET("/static/*file", consoleHandler(a.console.Static))
	pub.GET("/login", consoleHandler(a.console.LoginPage))
	pub.POST("/login", a.consoleLogin)

	g := e.Group("/console", a.limitIP, a.consoleCrossOrigin, a.consoleSession, a.limitUser, a.audit,
		a.consoleAdmin, a.withAdminTimeout)
	g.POST("/logout", consoleHandler(a.console.Logout))
	g.GET("", consoleHandler(a.console.OverviewPage))
	g.GET("/overview", consoleHandler(a.console.OverviewFragment))
	g.GET("/dlq", consoleHandler(a.console.DLQPage))
	g.GET("/dlq/:topic/:partition/:offset", consoleHandler(a.console.LetterPage))
	g.POST("/dlq/replay", consoleHandler(a.console.Replay))
	g.GET("/unknown", consoleHandler(a.console.UnknownPage))
	g.POST("/unknown/:id/resolve", consoleHandler(a.console.Resolve))
	g.GET("/reconcile", consoleHandler(a.console.ReconcilePage))
	g.POST("/reconcile", consoleHandler(a.console.ReconcileDryRun))
	g.GET("/webhooks", consoleHandler(a.console.WebhooksPage))
}

// refuse answers p before a route's own work (checkSize): on the
// console's routes as its error page, which a browser shows, elsewhere as
// the problem.
func (a *api) refuse(c *gin.Context, p problem.Details) {
	if route := c.FullPath(); a.console != nil && (route == "/console" || strings.HasPrefix(route, "/console/")) {
		a.console.Fail(c.Writer, c.Request, p.Status, p.Title, p.Detail)
		c.Abort()
		return
	}
	writeProblem(c, p)
}

// consoleHandler runs a console handler with gin's route parameters as the
// request's path values.
func consoleHandler(h http.HandlerFunc) gin.HandlerFunc {
	return func(c *gin.Context) {
		for _, p := range c.Params {
			c.Request.SetPathValue(p.Key, p.Value)
		}
		h(c.Writer, c.Request)
	}
}

// consoleCrossOrigin refuses cross-origin writes with a 403 page.
func (a *api) consoleCrossOrigin(c *gin.Context) {
	if err := a.crossOrigin.Check(c.Request); err != nil {
		a.console.Fail(c.Writer, c.Request, http.StatusForbidden, "Cross-origin request refused",
			"this form was not sent from the console's own pages ("+err.Error()+"): nothing was done")
		c.Abort()
		return
	}
	c.Next()
}

// consoleSession checks the session cookie's token as authenticate checks
// a bearer token; without a valid one it answers 401 with a sign-in link.
func (a *api) consoleSession(c *gin.Context) {
	tok := console.SessionToken(c.Request)
	if tok == "" {
		a.console.Fail(c.Writer, c.Request, http.StatusUnauthorized, "Sign in", "the console needs you to sign in with an admin token")
		c.Abort()
		return
	}
	p, err := a.verifier.FromHeader("Bearer " + tok)
	if err != nil {
		a.console.Fail(c.Writer, c.Request, http.StatusUnauthorized, "Sign in again", "the session's token was refused: "+err.Error())
		c.Abort()
		return
	}
	c.Set(keyPrincipal, p)
	c.Request = c.Request.WithContext(console.WithActor(c.Request.Context(), subject(p)))
	c.Next()
}

// consoleAdmin lets only admin tokens through.
func (a *api) consoleAdmin(c *gin.Context) {
	if p, ok := principal(c); !ok || !p.Admin {
		a.console.Fail(c.Writer, c.Request, http.StatusForbidden, "Admins only", "the console needs a token with the admin scope")
		c.Abort()
		return
	}
	c.Next()
}

// consoleLogin is POST /console/login; the audit names the token's
// subject when it was valid, "anonymous" otherwise.
func (a *api) consoleLogin(c *gin.Context) {
	p, ok := a.console.Login(c.Writer, c.Request)
	if ok || p.UserID != 0 {
		c.Set(keyPrincipal, p)
	}
}
