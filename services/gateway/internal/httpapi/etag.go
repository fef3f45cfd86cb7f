package httpapi

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/finsvc/finance/services/gateway/internal/store"
)

// Conditional GETs (RFC 9110 §8.8.3, §13.1.2). The feed and a payment carry
// a strong ETag made from what decides their answer, so a client that polls
// gets 304 Not Modified, with no body, until something changed:
//
//   - a feed page: the user, the wallet's event_seq (every change of the
//     balance, the holds or the user's payments bumps it, in the same
//     transaction) and the page's parameters (limit and cursor);
//   - a payment: its id, status and updated_at.
//
// Handlers check who may read first: another user's feed is 403 and
// another user's payment 404 whatever If-None-Match says, so an ETag never
// tells one user anything about another's data.

// feedETag is the ETag of a feed page.
func feedETag(userID, eventSeq int64, limit int, before int64) string {
	return `"f` + strconv.FormatInt(userID, 10) + "." + strconv.FormatInt(eventSeq, 10) +
		"." + strconv.Itoa(limit) + "." + strconv.FormatInt(before, 10) + `"`
}

// paymentETag is the ETag of a payment.
func paymentETag(p store.Payment) string {
	return `"p` + strconv.FormatInt(p.ID, 10) + "." + string(p.Status) + "." +
		strconv.FormatInt(p.UpdatedAt.UnixMicro(), 10) + `"`
}

// ifNoneMatch reports whether the request's If-None-Match matches etag:
// "*", or a list that names it (weakly: W/"x" matches "x", as RFC 9110 asks
// of If-None-Match). Anything malformed simply does not match: the client
// gets the full answer, never an error.
func ifNoneMatch(r *http.Request, etag string) bool {
	for _, h := range r.Header.Values("If-None-Match") {
		for tag := range strings.SplitSeq(h, ",") {
			tag = strings.TrimSpace(tag)
			if tag == "*" {
				return true
			}
			tag = strings.TrimPrefix(tag, "W/")
			if len(tag) >= 2 && tag[0] == '"' && tag[len(tag)-1] == '"' && tag == etag {
				return true
			}
		}
	}
	return false
}

// notModified sets the answer's ETag and, when the request's If-None-Match
// matches it, answers 304 with no body and reports true. Cache-Control
// keeps shared caches out (the answers are per user) and makes clients
// revalidate every time.
func notModified(c *gin.Context, etag string) bool {
	c.Header("ETag", etag)
	c.Header("Cache-Control", "private, no-cache")
	if !ifNoneMatch(c.Request, etag) {
		return false
	}
	c.Status(http.StatusNotModified)
	c.Writer.WriteHeaderNow()
	return true
}
