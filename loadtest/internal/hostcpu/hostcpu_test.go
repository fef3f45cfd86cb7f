package hostcpu

import (
	"math"
	"runtime"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	t.Parallel()
	stat := "cpu  81931 25956 47590 328792 2893 0 8259 22563 0 0\ncpu0 40000 12000 23000 164000 1400 0 4100 11000 0 0\nintr 1 2 3\n"
	got, err := Parse([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	want := Times{Busy: 819.31 + 259.56 + 475.90 + 82.59, Idle: 3287.92 + 28.93, Steal: 225.63}
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"busy", got.Busy, want.Busy}, {"idle", got.Idle, want.Idle}, {"steal", got.Steal, want.Steal}} {
		if math.Abs(c.got-c.want) > 1e-9 {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
	d := Times{Busy: 100, Idle: 60, Steal: 40}.Sub(Times{Busy: 50, Idle: 40, Steal: 10})
	if d != (Times{Busy: 50, Idle: 20, Steal: 30}) || d.StealShare() != 0.3 {
		t.Errorf("Sub: got %+v (steal share %v), want 50/20/30 and 0.3", d, d.StealShare())
	}
	if (Times{}).StealShare() != 0 {
		t.Error("an empty interval has no steal share")
	}
}

func TestParseRefusesWhatItCannotRead(t *testing.T) {
	t.Parallel()
	for name, stat := range map[string]string{
		"no cpu line":           "cpu0 1 2 3 4 5 6 7 8\n",
		"no steal (old kernel)": "cpu 1 2 3 4 5 6 7\n",
		"not a number":          "cpu 1 2 3 x 5 6 7 8\n",
	} {
		if _, err := Parse([]byte(stat)); err == nil || !strings.Contains(err.Error(), "/proc/stat") {
			t.Errorf("%s: got %v, want an error naming /proc/stat", name, err)
		}
	}
}

func TestReadThisMachine(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("/proc/stat is Linux's")
	}
	a, err := Read()
	if err != nil {
		t.Fatal(err)
	}
	if a.Busy <= 0 || a.Idle < 0 || a.Steal < 0 {
		t.Errorf("Read: %+v, want CPU time since boot", a)
	}
}

func TestMeterThisMachine(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("/proc/stat is Linux's")
	}
	m := NewMeter()
	for range 2 {
		share, err := m.Next()
		if err != nil || share < 0 || share > 1 {
			t.Errorf("Next: %v, %v; want a share of the CPUs' time", share, err)
		}
	}
}
