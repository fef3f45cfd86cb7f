// Package hostcpu reads how the machine's CPUs spent their time, from
// /proc/stat, to tell a run whose machine was taken away from it.
//
// On a virtual machine the hypervisor may run other guests on the cores
// this one was given: that time is "steal", time the VM's runnable work
// waited while no guest code of its own ran. Every process of a run (the
// target, its database, the load generator) is slowed alike, so two
// phases or two runs compare only if neither had much of it. Load average
// and the processes' own CPU seconds do not show it.
package hostcpu

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

// ticksPerSecond is the unit of /proc/stat (USER_HZ): 100 on every Linux
// architecture Go runs on.
const ticksPerSecond = 100

// Times are the machine's CPU times since boot, all CPUs together, in
// seconds.
type Times struct {
	// Busy is time running code: user, nice, system, irq and softirq.
	Busy float64
	// Idle is time with nothing to run, waiting for I/O included.
	Idle float64
	// Steal is time the hypervisor gave to other guests while this one
	// had work.
	Steal float64
}

// Total is every second the CPUs had, stolen ones included.
func (t Times) Total() float64 { return t.Busy + t.Idle + t.Steal }

// Sub is the CPU time spent between u (earlier) and t.
func (t Times) Sub(u Times) Times {
	return Times{Busy: t.Busy - u.Busy, Idle: t.Idle - u.Idle, Steal: t.Steal - u.Steal}
}

// StealShare is the share of the CPUs' time that was stolen, 0 when t is
// empty.
func (t Times) StealShare() float64 {
	if t.Total() <= 0 {
		return 0
	}
	return t.Steal / t.Total()
}

// Meter gives the share of the CPUs' time stolen between one reading of
// /proc/stat and the next.
type Meter struct {
	last Times
	err  error // why the last reading failed
}

// NewMeter takes the first reading.
func NewMeter() *Meter {
	m := &Meter{}
	m.last, m.err = Read()
	return m
}

// Next reads /proc/stat again and returns the share of the CPUs' time
// stolen since the previous reading (NewMeter's or Next's), rounded to
// 0.01%; an error when this reading or the previous one failed.
func (m *Meter) Next() (float64, error) {
	now, err := Read()
	prev, prevErr := m.last, m.err
	m.last, m.err = now, err
	if err := errors.Join(prevErr, err); err != nil {
		return 0, err
	}
	return math.Round(now.Sub(prev).StealShare()*10_000) / 10_000, nil
}

// Read reads the machine's CPU times from /proc/stat.
func Read() (Times, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return Times{}, err
	}
	return Parse(b)
}

// Parse reads the aggregate "cpu" line of a /proc/stat: user, nice,
// system, idle, iowait, irq, softirq, steal (guest time is already in user
// and nice).
func Parse(stat []byte) (Times, error) {
	sc := bufio.NewScanner(bytes.NewReader(stat))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "cpu" {
			continue
		}
		if len(f) < 9 {
			return Times{}, fmt.Errorf("/proc/stat: the cpu line has %d fields, want at least 8 times (steal is the 8th)", len(f)-1)
		}
		var v [8]float64
		for i := range v {
			n, err := strconv.ParseUint(f[i+1], 10, 64)
			if err != nil {
				return Times{}, fmt.Errorf("/proc/stat: cpu field %d: %w", i+1, err)
			}
			v[i] = float64(n) / ticksPerSecond
		}
		user, nice, system, idle, iowait, irq, softirq, steal := v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]
		return Times{Busy: user + nice + system + irq + softirq, Idle: idle + iowait, Steal: steal}, nil
	}
	if err := sc.Err(); err != nil {
		return Times{}, err
	}
	return Times{}, errors.New("/proc/stat: no cpu line")
}
