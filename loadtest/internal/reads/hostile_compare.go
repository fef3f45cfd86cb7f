package reads

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/finsvc/finance/loadtest/internal/report"
)

// ComparePhases is the plot of hostile runs side by side, by the suffix of
// its file name.
const ComparePhases = "-phases.png"

// ReadHostileReport reads a hostile run's results.json (path, or the run
// directory holding it).
func ReadHostileReport(path string) (*HostileReport, error) {
	var r HostileReport
	path, err := readResults(path, &r)
	if err != nil {
		return nil, err
	}
	if r.Kind != Hostile || r.Result == nil || len(r.Result.Phases) == 0 {
		return nil, fmt.Errorf("%s is not a hostile run's results.json", path)
	}
	return &r, nil
}

// WriteHostileComparison draws one or more hostile runs, each named by
// names[i], into prefix+ComparePhases: the victims' p99 in each phase, the
// quiet and the hostile phases side by side within each run. The runs
// must alternate their phases alike.
func WriteHostileComparison(runs []*HostileReport, names []string, prefix string) ([]string, error) {
	if len(runs) == 0 || len(names) != len(runs) {
		return nil, errors.New("a hostile comparison needs one name per run, and a run")
	}
	first := runs[0].Result.Phases
	ticks := make([]string, len(first))
	for i, ph := range first {
		side := "quiet"
		if ph.Hostile {
			side = "hostile"
		}
		ticks[i] = strconv.Itoa(i+1) + " " + side
	}
	lines := make([]report.Line, len(runs))
	for i, r := range runs {
		phases := r.Result.Phases
		if len(phases) != len(first) {
			return nil, fmt.Errorf("%s has %d phases and %s %d: compare runs of the same phases", names[i], len(phases), names[0], len(first))
		}
		lines[i].Name = fmt.Sprintf("%s: hostile/quiet p99 %.2f×", names[i], r.P99Ratio)
		for j, ph := range phases {
			if ph.Hostile != first[j].Hostile {
				return nil, fmt.Errorf("%s's phase %d is not of %s's side: compare runs of the same phases", names[i], j+1, names[0])
			}
			lines[i].Y = append(lines[i].Y, ph.Victims.P99)
		}
	}
	p, err := report.LinePlot("Other users' p99 in each phase, with and without the hostile client", "victims' p99, milliseconds", ticks, lines)
	if err != nil {
		return nil, err
	}
	if err := report.SavePlot(p, prefix+ComparePhases); err != nil {
		return nil, err
	}
	return []string{prefix + ComparePhases}, nil
}
