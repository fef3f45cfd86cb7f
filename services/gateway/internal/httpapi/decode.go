package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
)

// maxBodyBytes caps request bodies; a payment request is under 100 bytes.
const maxBodyBytes = 64 << 10

func tooLarge() error {
	return &apiError{http.StatusRequestEntityTooLarge, typePayloadTooLarge, "Payload too large",
		fmt.Sprintf("the request body must not exceed %d bytes", maxBodyBytes)}
}

// decodeJSON reads the body, which must be one JSON object of dst's type
// with no unknown fields, sent as application/json (charset utf-8 allowed).
func decodeJSON(c *gin.Context, dst any, fields string) error {
	if err := checkContentType(c.GetHeader("Content-Type")); err != nil {
		return err
	}
	if c.Request.ContentLength > maxBodyBytes {
		return tooLarge()
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, maxBodyBytes))
	if err != nil {
		return decodeError(err, fields)
	}
	// A key sent twice is refused, not resolved to its last value: a proxy
	// or WAF in front that reads the first one would see another request.
	if key, dup := duplicateKey(body); dup {
		return invalid(fmt.Sprintf("the key %q appears twice in one JSON object", key))
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeError(err, fields)
	}
	var extra json.RawMessage
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
		return nil
	case err != nil:
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return tooLarge()
		}
	}
	return invalid("the body must hold exactly one JSON object; found data after it")
}

// duplicateKey reports the first key that appears twice in one object of
// the JSON in body, at any depth. Malformed JSON reports none: the decoder
// explains it.
func duplicateKey(body []byte) (string, bool) {
	type frame struct {
		keys    map[string]bool // nil for an array
		wantKey bool
	}
	var stack []*frame
	dec := json.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				stack = append(stack, &frame{keys: map[string]bool{}, wantKey: true})
				continue
			case '[':
				stack = append(stack, &frame{})
				continue
			default:
				stack = stack[:len(stack)-1]
			}
		case string:
			if n := len(stack); n > 0 && stack[n-1].keys != nil && stack[n-1].wantKey {
				f := stack[n-1]
				if f.keys[v] {
					return v, true
				}
				f.keys[v], f.wantKey = true, false
				continue
			}
		}
		// A value ended: its object, if any, wants a key next.
		if n := len(stack); n > 0 && stack[n-1].keys != nil {
			stack[n-1].wantKey = true
		}
	}
}

func checkContentType(ct string) error {
	unsupported := &apiError{http.StatusUnsupportedMediaType, typeUnsupportedMediaType, "Unsupported media type",
		fmt.Sprintf("Content-Type must be application/json (optionally with charset=utf-8), got %q", ct)}
	if ct == "" {
		return unsupported
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return unsupported
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return unsupported
		}
	}
	return nil
}

// decodeError explains a JSON decoding failure in the client's terms.
func decodeError(err error, fields string) error {
	var (
		mbe *http.MaxBytesError
		se  *json.SyntaxError
		ute *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &mbe):
		return tooLarge()
	case errors.Is(err, io.EOF):
		return invalid("the request body is empty; expected a JSON object with " + fields)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalid("malformed JSON: the body ends in the middle of a value")
	case errors.As(err, &se):
		return invalid(fmt.Sprintf("malformed JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: ")))
	case errors.As(err, &ute):
		if ute.Field == "" {
			return invalid("the body must be a JSON object with " + fields + ", got a JSON " + ute.Value)
		}
		if ute.Field == "amount" {
			return invalid("amount must be an integer number of minor units (e.g. -3000), got JSON " + ute.Value)
		}
		return invalid(fmt.Sprintf("%s must be %s, got JSON %s", ute.Field, jsonKind(ute.Type), ute.Value))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name, _ := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
		return invalid(fmt.Sprintf("unknown field %q; the accepted fields are %s", name, fields))
	default:
		return invalid("malformed JSON: " + strings.TrimPrefix(err.Error(), "json: "))
	}
}

// jsonKind names what a field of Go type t is in JSON, for a client: a
// webhook endpoint's url is a string, not the integer every payment field is.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	}
	return "a JSON " + t.String()
}

// idempotencyKeyHeader is the header that makes payment creation retryable.
const idempotencyKeyHeader = "Idempotency-Key"

// maxIdempotencyKeyLen is the longest Idempotency-Key accepted.
const maxIdempotencyKeyLen = 255

// idempotencyKey returns the request's Idempotency-Key; ok is false when the
// header is absent. A present header must be 1–255 printable ASCII characters.
func idempotencyKey(c *gin.Context) (key string, ok bool, err error) {
	vals := c.Request.Header.Values(idempotencyKeyHeader)
	switch {
	case len(vals) == 0:
		return "", false, nil
	case len(vals) > 1:
		return "", false, invalid("send exactly one Idempotency-Key header")
	}
	key = strings.TrimSpace(vals[0])
	if key == "" || len(key) > maxIdempotencyKeyLen {
		return "", false, invalid(fmt.Sprintf("Idempotency-Key must be 1 to %d printable ASCII characters", maxIdempotencyKeyLen))
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return "", false, invalid(fmt.Sprintf("Idempotency-Key must be 1 to %d printable ASCII characters", maxIdempotencyKeyLen))
		}
	}
	return key, true, nil
}

// parseID reads a positive int64 identifier named name.
func parseID(s, name string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, invalid(fmt.Sprintf("%s must be a positive integer, got %q", name, s))
	}
	return id, nil
}
