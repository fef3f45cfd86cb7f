package obs

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/finsvc/finance/pkg/envconfig"
	"github.com/finsvc/finance/pkg/problem"
)

// levelHandler is the JSON handler of NewLogger with the slog.LevelVar that
// sets its level. It keeps the variable through WithAttrs and WithGroup, so
// any logger derived from the service's (logger.With(...)) still leads back
// to it (LevelOf), and one change applies to every line of the process.
type levelHandler struct {
	slog.Handler
	level *slog.LevelVar
}

func (h levelHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return levelHandler{Handler: h.Handler.WithAttrs(attrs), level: h.level}
}

func (h levelHandler) WithGroup(name string) slog.Handler {
	return levelHandler{Handler: h.Handler.WithGroup(name), level: h.level}
}

// LevelOf returns the level variable of a logger made by NewLogger (or
// derived from one), or nil for any other logger.
func LevelOf(logger *slog.Logger) *slog.LevelVar {
	if logger == nil {
		return nil
	}
	switch h := logger.Handler().(type) {
	case levelHandler:
		return h.level
	case minLevel:
		return LevelOf(slog.New(h.Handler))
	}
	return nil
}

// parseLevel reads one of envconfig.LogLevels, in any case.
func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	s = strings.TrimSpace(s)
	if err := l.UnmarshalText([]byte(strings.ToUpper(s))); err != nil || !strings.EqualFold(s, strings.ToLower(l.String())) {
		return 0, fmt.Errorf("log level %q: want %s", s, envconfig.LogLevels)
	}
	return l, nil
}

// levelDoc is the body of GET and PUT /loglevel.
type levelDoc struct {
	Level string `json:"level"`
}

// OpsOption adds a route to the ops mux (OpsMux).
type OpsOption func(mux *http.ServeMux)

// WithLogLevel serves GET and PUT /loglevel on the ops mux for logger (made
// by Start or NewLogger): GET answers {"level":"info"}; PUT with
// {"level":"debug"} (or the bare word) changes the level of every line the
// process logs from then on, until the next PUT or a restart (which goes
// back to LOG_LEVEL), and answers the new level. The change is logged, at
// warn so that it shows at any level. A level outside debug, info, warn,
// error is refused with 400 problem+json and changes nothing.
func WithLogLevel(logger *slog.Logger) OpsOption {
	return func(mux *http.ServeMux) {
		lv := LevelOf(logger)
		if lv == nil {
			return
		}
		write := func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(levelDoc{Level: strings.ToLower(lv.Level().String())})
		}
		mux.HandleFunc("GET /loglevel", func(w http.ResponseWriter, _ *http.Request) { write(w) })
		mux.HandleFunc("PUT /loglevel", func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(io.LimitReader(r.Body, 1<<10))
			if err != nil {
				problem.Write(w, problem.New(http.StatusBadRequest, "bad-log-level", "Bad log level", "read body: "+err.Error()))
				return
			}
			word := string(body)
			if trimmed := strings.TrimSpace(word); strings.HasPrefix(trimmed, "{") {
				var doc levelDoc
				dec := json.NewDecoder(strings.NewReader(trimmed))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&doc); err != nil {
					problem.Write(w, problem.New(http.StatusBadRequest, "bad-log-level", "Bad log level",
						`want {"level":"debug|info|warn|error"}: `+err.Error()))
					return
				}
				word = doc.Level
			}
			l, err := parseLevel(word)
			if err != nil {
				problem.Write(w, problem.New(http.StatusBadRequest, "bad-log-level", "Bad log level", err.Error()))
				return
			}
			old := lv.Level()
			lv.Set(l)
			logger.LogAttrs(context.Background(), slog.LevelWarn, "log level changed",
				slog.String("from", strings.ToLower(old.String())), slog.String("to", strings.ToLower(l.String())),
				slog.String("remote_addr", r.RemoteAddr))
			write(w)
		})
	}
}
