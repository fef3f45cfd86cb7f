package main

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/finsvc/finance/pkg/envconfig"
	"github.com/finsvc/finance/pkg/postgres"
)

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		want    config
		wantErr []string // substrings that must all be in the error
	}{
		{
			name: "defaults",
			env:  map[string]string{},
			want: config{
				Postgres:        postgres.Config{URL: postgres.DefaultURL, MaxConns: 2},
				Kafka:           envconfig.Kafka{Brokers: []string{"127.0.0.1:9092"}},
				Ops:             envconfig.Ops{LogLevel: "info", Addr: ":9102", ShutdownTimeout: 10 * time.Second, HTTP: envconfig.DefaultHTTPServer},
				PollInterval:    500 * time.Millisecond,
				Linger:          DefaultLinger,
				BatchSize:       500,
				LockRetry:       time.Second,
				BacklogInterval: 5 * time.Second,
				ProduceTimeout:  10 * time.Second,
			},
		},
		{
			name: "overrides",
			env: map[string]string{
				"DATABASE_URL":        "postgres://u:p@db:5432/x",
				"KAFKA_BROKERS":       "k1:9092, k2:9092",
				"LOG_LEVEL":           "debug",
				"OPS_ADDR":            ":1",
				"RELAY_POLL_INTERVAL": "50ms",
				"RELAY_LINGER":        "0s",
				"RELAY_BATCH_SIZE":    "10",
				"RELAY_LOCK_RETRY":    "2s",
			},
			want: config{
				Postgres:        postgres.Config{URL: "postgres://u:p@db:5432/x", MaxConns: 2},
				Kafka:           envconfig.Kafka{Brokers: []string{"k1:9092", "k2:9092"}},
				Ops:             envconfig.Ops{LogLevel: "debug", Addr: ":1", ShutdownTimeout: 10 * time.Second, HTTP: envconfig.DefaultHTTPServer},
				PollInterval:    50 * time.Millisecond,
				BatchSize:       10,
				LockRetry:       2 * time.Second,
				BacklogInterval: 5 * time.Second,
				ProduceTimeout:  10 * time.Second,
			},
		},
		{
			name: "every problem reported",
			env: map[string]string{
				"RELAY_BATCH_SIZE":    "0",
				"RELAY_LINGER":        "2s",
				"RELAY_POLL_INTERVAL": "soon",
				"RELAY_LOCK_RETRY":    "-1s",
				"LOG_LEVEL":           "loud",
			},
			wantErr: []string{"RELAY_BATCH_SIZE", "RELAY_LINGER", "RELAY_POLL_INTERVAL", "RELAY_LOCK_RETRY", "LOG_LEVEL"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := loadConfig(func(k string) string { return tt.env[k] })
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatal("want an error")
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not mention %s", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLogValueRedactsPassword(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(func(k string) string {
		return map[string]string{"DATABASE_URL": "postgres://u:hunter2@db/x"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("starting", "config", cfg)
	if strings.Contains(b.String(), "hunter2") || !strings.Contains(b.String(), "u:REDACTED@db") {
		t.Errorf("the logged config leaks the password or lacks the URL: %s", b.String())
	}
}
