package main

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/finsvc/finance/pkg/envconfig"
	"github.com/finsvc/finance/services/gateway/internal/abuse"
	"github.com/finsvc/finance/services/gateway/internal/httpapi"
	"github.com/finsvc/finance/services/gateway/internal/ratelimit"
)

func TestLoadLimits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  map[string]string
		want httpapi.Limits
	}{
		{name: "defaults", want: httpapi.DefaultLimits},
		{
			name: "set",
			env: map[string]string{
				"GATEWAY_RATE_LIMIT_IP_RATE": "50", "GATEWAY_RATE_LIMIT_IP_BURST": "100",
				"GATEWAY_RATE_LIMIT_USER_RATE": "0.5", "GATEWAY_RATE_LIMIT_USER_BURST": "3",
				"GATEWAY_RATE_LIMIT_ADMIN_RATE": "0", "GATEWAY_RATE_LIMIT_MAX_KEYS": "1000",
			},
			want: httpapi.Limits{
				IP: ratelimit.Policy{Rate: 50, Burst: 100}, User: ratelimit.Policy{Rate: 0.5, Burst: 3},
				Admin: ratelimit.Policy{Rate: 0, Burst: 400}, MaxKeys: 1000,
			},
		},
		{
			name: "all off",
			env:  map[string]string{"GATEWAY_RATE_LIMIT": "false"},
			want: httpapi.Limits{MaxKeys: httpapi.DefaultLimits.MaxKeys},
		},
	} {
		r := envconfig.New(getenv(tc.env))
		got := loadLimits(r)
		if diff := cmp.Diff(tc.want, got); diff != "" || r.Err() != nil {
			t.Errorf("%s: loadLimits (-want +got):\n%s\nerr: %v", tc.name, diff, r.Err())
		}
	}

	r := envconfig.New(getenv(map[string]string{
		"GATEWAY_RATE_LIMIT_USER_RATE": "-1", "GATEWAY_RATE_LIMIT_MAX_KEYS": "0", "GATEWAY_RATE_LIMIT": "maybe",
	}))
	loadLimits(r)
	for _, want := range []string{"GATEWAY_RATE_LIMIT_USER_RATE=-1", "GATEWAY_RATE_LIMIT_MAX_KEYS=0", `GATEWAY_RATE_LIMIT="maybe"`} {
		if err := r.Err(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}

func TestLoadBlockPolicy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  map[string]string
		want abuse.Policy
	}{
		{name: "defaults", want: abuse.DefaultPolicy},
		{
			name: "set",
			env: map[string]string{
				"GATEWAY_BLOCK_REFUSALS_RATE": "5", "GATEWAY_BLOCK_REFUSALS_BURST": "20",
				"GATEWAY_BLOCK_FOR": "1s", "GATEWAY_BLOCK_MAX": "1m", "GATEWAY_BLOCK_PROBATION": "2m",
				"GATEWAY_BLOCK_HOLD_PER_ADDRESS": "0", "GATEWAY_BLOCK_HOLD_MAX": "10", "GATEWAY_BLOCK_HOLD_FOR": "5s",
			},
			want: abuse.Policy{
				Refusals: ratelimit.Policy{Rate: 5, Burst: 20},
				Block:    time.Second, MaxBlock: time.Minute, Probation: 2 * time.Minute,
				HoldMax: 10, HoldFor: 5 * time.Second,
			},
		},
		{name: "off", env: map[string]string{"GATEWAY_BLOCK": "false"}},
		{name: "every limit off", env: map[string]string{"GATEWAY_RATE_LIMIT": "false"}},
	} {
		r := envconfig.New(getenv(tc.env))
		got := loadBlockPolicy(r)
		if diff := cmp.Diff(tc.want, got); diff != "" || r.Err() != nil {
			t.Errorf("%s: loadBlockPolicy (-want +got):\n%s\nerr: %v", tc.name, diff, r.Err())
		}
	}
	r := envconfig.New(getenv(map[string]string{"GATEWAY_BLOCK_REFUSALS_BURST": "-1", "GATEWAY_BLOCK_FOR": "0s"}))
	loadBlockPolicy(r)
	for _, want := range []string{"GATEWAY_BLOCK_REFUSALS_RATE=50, _BURST=-1", "GATEWAY_BLOCK_FOR=0s"} {
		if err := r.Err(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}

// TestLoadConfigHeaderCap: HTTP_MAX_HEADER_BYTES is the API's 431 cap too.
func TestLoadConfigHeaderCap(t *testing.T) {
	t.Parallel()
	c, err := loadConfig(getenv(with(prodAuth, "HTTP_MAX_HEADER_BYTES", "4096")))
	if err != nil {
		t.Fatal(err)
	}
	if c.Limits.MaxHeaderBytes != 4096 || c.Ops.HTTP.MaxHeaderBytes != 4096 {
		t.Errorf("header caps: API %d, server %d; want 4096", c.Limits.MaxHeaderBytes, c.Ops.HTTP.MaxHeaderBytes)
	}
}

func TestLoadLogPolicy(t *testing.T) {
	t.Parallel()
	r := envconfig.New(getenv(map[string]string{"LOG_READ_SAMPLE": "1", "LOG_REFUSALS_PER_SECOND": "0", "LOG_SLOW_REQUEST": "2s"}))
	if got := loadLogPolicy(r); got != (httpapi.LogPolicy{ReadSample: 1, Slow: 2 * time.Second}) || r.Err() != nil {
		t.Errorf("loadLogPolicy = %+v, err %v", got, r.Err())
	}
	r = envconfig.New(getenv(map[string]string{"LOG_READ_SAMPLE": "0", "LOG_REFUSALS_PER_SECOND": "-1", "LOG_SLOW_REQUEST": "-1s"}))
	loadLogPolicy(r)
	for _, want := range []string{"LOG_READ_SAMPLE=0", "LOG_REFUSALS_PER_SECOND=-1", "LOG_SLOW_REQUEST=-1s"} {
		if err := r.Err(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}
