package httpapi

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
)

// Feed page sizes.
const (
	defaultFeedLimit = 50
	maxFeedLimit     = 200
)

// feedJSON is the feed document. Its first three fields are the as-is
// response, unchanged; the others were added for the v1 API.
type feedJSON struct {
	UserID           int64             `json:"user_id"`
	Balance          int64             `json:"balance"`
	Transactions     []transactionJSON `json:"transactions"`
	AvailableBalance int64             `json:"available_balance"`
	NextCursor       string            `json:"next_cursor,omitempty"`
}

// transactionJSON is one settled payment in the feed.
type transactionJSON struct {
	ID        int64  `json:"id"`
	Name      string `json:"name"`
	Amount    int64  `json:"amount"`
	Timestamp int64  `json:"timestamp"`
}

// getFeed is GET /v1/users/{user_id}/feed.
func (a *api) getFeed(c *gin.Context) error {
	userID, err := parseID(c.Param("user_id"), "user_id")
	if err != nil {
		return err
	}
	return a.serveFeed(c, userID)
}

// getLegacyFeed is the as-is GET /payment_feed?user_id=.
func (a *api) getLegacyFeed(c *gin.Context) error {
	raw, ok := c.GetQuery("user_id")
	if !ok {
		return invalid("the query parameter user_id is required")
	}
	userID, err := parseID(raw, "user_id")
	if err != nil {
		return err
	}
	return a.serveFeed(c, userID)
}

func (a *api) serveFeed(c *gin.Context, userID int64) error {
	if p, _ := principal(c); !p.CanActFor(userID) {
		return forbidden(fmt.Sprintf("this token may only read the feed of user %d", p.UserID))
	}
	limit, err := parseLimit(c)
	if err != nil {
		return err
	}
	var before int64
	if raw, ok := c.GetQuery("cursor"); ok {
		id, err := decodeCursor(raw)
		if err != nil {
			return err
		}
		before = id
	}

	return a.serveFeedPage(c, userID, limit, before)
}

// parseLimit reads the feed's ?limit=, defaultFeedLimit when absent.
func parseLimit(c *gin.Context) (int, error) {
	return queryLimit(c, defaultFeedLimit, maxFeedLimit)
}

// queryLimit reads ?limit=, an integer from 1 to max; def when absent.
func queryLimit(c *gin.Context, def, max int) (int, error) {
	raw, ok := c.GetQuery("limit")
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 || n > max {
		return 0, invalid(fmt.Sprintf("limit must be an integer from 1 to %d, got %q", max, raw))
	}
	return n, nil
}

// Cursors are opaque to clients: the id of the last entry shown, versioned
// so the encoding can change without breaking cursors in flight.
const cursorPrefix = "e1:"

func encodeCursor(lastEntryID int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + strconv.FormatInt(lastEntryID, 10)))
}

func decodeCursor(s string) (int64, error) {
	bad := invalid("cursor is not a cursor this API returned; pass next_cursor from the previous page as is")
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return 0, bad
	}
	rest, ok := strings.CutPrefix(string(raw), cursorPrefix)
	if !ok {
		return 0, bad
	}
	id, err := strconv.ParseInt(rest, 10, 64)
	// Only the encoding encodeCursor makes: "e1:042", "e1:+42" and base64
	// with stray trailing bits named the same page under other cursors
	// (found by FuzzCursor).
	if err != nil || id <= 0 || encodeCursor(id) != s {
		return 0, bad
	}
	return id, nil
}
