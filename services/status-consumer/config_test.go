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
				Postgres:       postgres.Config{URL: postgres.DefaultURL, MaxConns: 16},
				Kafka:          envconfig.Kafka{Brokers: []string{"127.0.0.1:9092"}},
				Ops:            envconfig.Ops{LogLevel: "info", Addr: ":9103", ShutdownTimeout: 10 * time.Second, HTTP: envconfig.DefaultHTTPServer},
				MaxPollRecords: 500,
				RetryTimeout:   30 * time.Second,
				AttemptTimeout: 10 * time.Second,
				BatchWait:      20 * time.Millisecond,
			},
		},
		{
			name: "overrides",
			env: map[string]string{
				"DATABASE_URL":              "postgres://u:p@db:5432/x",
				"DATABASE_MAX_CONNS":        "4",
				"KAFKA_BROKERS":             "k1:9092,k2:9092",
				"LOG_LEVEL":                 "debug",
				"OPS_ADDR":                  ":1",
				"CONSUMER_MAX_POLL_RECORDS": "10",
				"CONSUMER_RETRY_TIMEOUT":    "1m",
				"CONSUMER_BATCH_WAIT":       "0s",
			},
			want: config{
				Postgres:       postgres.Config{URL: "postgres://u:p@db:5432/x", MaxConns: 4},
				Kafka:          envconfig.Kafka{Brokers: []string{"k1:9092", "k2:9092"}},
				Ops:            envconfig.Ops{LogLevel: "debug", Addr: ":1", ShutdownTimeout: 10 * time.Second, HTTP: envconfig.DefaultHTTPServer},
				MaxPollRecords: 10,
				RetryTimeout:   time.Minute,
				AttemptTimeout: 10 * time.Second,
			},
		},
		{
			name: "every problem reported",
			env: map[string]string{
				"CONSUMER_MAX_POLL_RECORDS": "0",
				"CONSUMER_RETRY_TIMEOUT":    "later",
				"CONSUMER_BATCH_WAIT":       "5s",
				"DATABASE_MAX_CONNS":        "1",
				"LOG_LEVEL":                 "loud",
			},
			wantErr: []string{"CONSUMER_MAX_POLL_RECORDS", "CONSUMER_RETRY_TIMEOUT", "CONSUMER_BATCH_WAIT", "DATABASE_MAX_CONNS", "LOG_LEVEL"},
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
