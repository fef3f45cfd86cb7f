// Package progress shows the live progress line of a run: a progressbar on a
// terminal, a plain line every few seconds elsewhere (CI logs).
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/finsvc/finance/loadtest/internal/loadgen"
)

// plainEvery is how often the non-terminal line is printed.
const plainEvery = 5 * time.Second

// Line renders loadgen statuses.
type Line struct {
	w     io.Writer
	title string
	tty   bool

	mu        sync.Mutex
	bar       *progressbar.ProgressBar
	barPhase  string
	lastPlain time.Time
}

// New returns a progress line titled title on w. It draws a bar when w is a
// terminal.
func New(w io.Writer, title string) *Line {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	return &Line{w: w, title: title, tty: tty}
}

// Describe formats a status as one line.
func Describe(s loadgen.Status) string {
	line := fmt.Sprintf("sent %d ok %d failed %d in-flight %d | p99 write %s read %s",
		s.Sent, s.OK, s.Failed, s.InFlight, ms(s.WriteP99), ms(s.ReadP99))
	line += fmt.Sprintf(" | backlog %d", s.Backlog)
	if s.Unknown > 0 {
		line += fmt.Sprintf(" (+%d unknown)", s.Unknown)
	}
	line += fmt.Sprintf(" | processor %.0f/s of L=%.0f", s.ProcRate, s.Limit)
	return line
}

func ms(v float64) string {
	if v <= 0 {
		return "-"
	}
	if v >= 1000 {
		return fmt.Sprintf("%.1fs", v/1000)
	}
	return fmt.Sprintf("%.0fms", v)
}

// Update shows s.
func (l *Line) Update(s loadgen.Status) {
	l.mu.Lock()
	defer l.mu.Unlock()
	desc := fmt.Sprintf("%s %s: %s", l.title, s.Phase, Describe(s))
	if !l.tty {
		if time.Since(l.lastPlain) >= plainEvery {
			l.lastPlain = time.Now()
			fmt.Fprintf(l.w, "[%5.0fs] %s\n", s.Elapsed.Seconds(), desc)
		}
		return
	}
	if l.bar == nil || l.barPhase != s.Phase {
		if l.bar != nil {
			_ = l.bar.Finish()
			fmt.Fprintln(l.w)
		}
		max := int64(-1) // a spinner while draining: its length is unknown
		if s.Phase == "load" {
			max = int64(s.Total / time.Second)
		}
		l.bar = progressbar.NewOptions64(max,
			progressbar.OptionSetWriter(l.w),
			progressbar.OptionSetWidth(20),
			progressbar.OptionSetPredictTime(false),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionShowDescriptionAtLineEnd(),
		)
		l.barPhase = s.Phase
	}
	l.bar.Describe(desc)
	if s.Phase == "load" {
		_ = l.bar.Set64(min(int64(s.Elapsed/time.Second), int64(s.Total/time.Second)))
	} else {
		_ = l.bar.Add(1)
	}
}

// Finish ends the line.
func (l *Line) Finish() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bar != nil {
		_ = l.bar.Finish()
		fmt.Fprintln(l.w)
		l.bar = nil
	}
}
