package httpapi

import (
	"github.com/gin-gonic/gin"

	"github.com/finsvc/finance/services/gateway/internal/ratelimit"
)

// countRefusal charges a refused request (any 4xx) to its address's budget
// in the guard (internal/abuse), which blocks the address when it is
// overdrawn; the guard's handler and listener then stop its requests before
// they reach the API.
func (a *api) countRefusal(c *gin.Context, status int) {
	if status >= 400 && status < 500 {
		a.guard.Refused(ratelimit.AddrKey(c.RemoteIP()))
	}
}
