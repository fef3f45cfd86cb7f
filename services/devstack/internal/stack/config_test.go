package stack

import "testing"

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
