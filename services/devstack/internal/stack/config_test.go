package stack

import (
	"strings"
	"testing"
)

// The simulator's record lives in the state folder unless SIM_DATA_FILE
// names another file; a SIM_DATA_FILE in Options.SimEnv wins over both.
func TestSimDataFile(t *testing.T) {
	tests := []struct {
		name   string
		env    map[string]string
		simEnv []string
		want   string
	}{
		{name: "default", env: map[string]string{"STATE_DIR": "/tmp/state"}, want: "/tmp/state/processor-sim.jsonl"},
		{name: "from the environment", env: map[string]string{"STATE_DIR": "/tmp/state", "SIM_DATA_FILE": "/tmp/mine.jsonl"},
			want: "/tmp/mine.jsonl"},
		{name: "from the options", env: map[string]string{"STATE_DIR": "/tmp/state", "SIM_DATA_FILE": "/tmp/mine.jsonl"},
			simEnv: []string{"SIM_DECLINE_RATE=0.1", "SIM_DATA_FILE=/tmp/chaos.jsonl"}, want: "/tmp/chaos.jsonl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := LoadConfig(func(k string) string { return tt.env[k] })
			if err != nil {
				t.Fatal(err)
			}
			if got := simDataFile(cfg, Options{SimEnv: tt.simEnv}); got != tt.want {
				t.Errorf("simDataFile = %q, want %q", got, tt.want)
			}
		})
	}
}

// Every light process gets one P by default, the gateway every CPU;
// DEVSTACK_WORKER_PROCS=0 leaves them all to Go's default.
func TestSchedulerEnv(t *testing.T) {
	tests := []struct {
		procs string
		name  string
		want  string
	}{
		{"", "dispatcher", "GOMAXPROCS=1"},
		{"", "devkafka", "GOMAXPROCS=1"},
		{"", "processor-sim", "GOMAXPROCS=1"},
		{"", "gateway", ""},
		{"2", "status-consumer", "GOMAXPROCS=2"},
		{"0", "dispatcher", ""},
	}
	for _, tt := range tests {
		cfg, err := LoadConfig(func(k string) string {
			if k == "DEVSTACK_WORKER_PROCS" {
				return tt.procs
			}
			return ""
		})
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(cfg.schedulerEnv(tt.name), " ")
		if got != tt.want {
			t.Errorf("DEVSTACK_WORKER_PROCS=%q, %s: env %q, want %q", tt.procs, tt.name, got, tt.want)
		}
	}
	def, err := LoadConfig(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if def.niceness("gateway") != 0 || def.niceness("dispatcher") != 10 || def.niceness("devkafka") != 10 {
		t.Errorf("niceness gateway %d, dispatcher %d, devkafka %d; want 0, 10, 10",
			def.niceness("gateway"), def.niceness("dispatcher"), def.niceness("devkafka"))
	}
	if _, err := LoadConfig(func(k string) string {
		if k == "DEVSTACK_WORKER_PROCS" {
			return "-1"
		}
		return ""
	}); err == nil || !strings.Contains(err.Error(), "DEVSTACK_WORKER_PROCS=-1") {
		t.Errorf("DEVSTACK_WORKER_PROCS=-1: err %v, want one naming it", err)
	}
}
