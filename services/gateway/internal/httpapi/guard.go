package httpapi

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/finsvc/finance/pkg/problem"
	"github.com/finsvc/finance/services/gateway/internal/ratelimit"
)

// typeBlocked is the problem type of a request from a blocked address.
const typeBlocked = "blocked"

// refuseBlocked answers a request from an address the guard has blocked
// (internal/abuse) with 429 and closes its connection, before the request
// is traced, measured, logged or authenticated: while blocked, a client
// costs as little as it can. A new connection from it does not even get
// here: the guard's listener closes it.
func (a *api) refuseBlocked(c *gin.Context) {
	wait := a.guard.BlockedFor(ratelimit.AddrKey(c.RemoteIP()))
	if wait <= 0 {
		c.Next()
		return
	}
	a.guard.RefusedRequest()
	retry := ceilSeconds(wait)
	budget := a.guard.Policy().Refusals
	h := c.Writer.Header()
	h.Set("RateLimit-Policy", fmt.Sprintf("%q;q=%d;w=%d", typeBlocked, budget.Burst, budget.Window()))
	h.Set("RateLimit", fmt.Sprintf("%q;r=0;t=%d", typeBlocked, retry))
	h.Set("Retry-After", strconv.Itoa(retry))
	h.Set("Connection", "close")
	writeProblem(c, problem.New(http.StatusTooManyRequests, typeBlocked, "Client address blocked",
		fmt.Sprintf("too many refused requests from this address; it is blocked for %d s", retry)))
}

// countRefusal charges a refused request (any 4xx) to its address's budget
// in the guard, which blocks the address when it is overdrawn.
func (a *api) countRefusal(c *gin.Context, status int) {
	if status >= 400 && status < 500 {
		a.guard.Refused(ratelimit.AddrKey(c.RemoteIP()))
	}
}
