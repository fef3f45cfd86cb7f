package chaos

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/finsvc/finance/pkg/verify"
)

func TestParseFlags(t *testing.T) {
	t.Parallel()
	small := DefaultConfig()
	small.Users, small.Payments, small.Kill, small.KillsPerService, small.Outage = 50, 300, []string{"gateway", "dispatcher"}, 5, 3*time.Second
	issue10 := RebalanceKillsConfig()
	issue10.Payments, issue10.Liveness = 500, time.Minute
	tests := []struct {
		name    string
		args    []string
		want    Config
		wantErr []string
	}{
		{name: "defaults are make chaos", want: DefaultConfig()},
		{name: "flags override", args: []string{"--users", "50", "--payments", "300", "--kill", "gateway, dispatcher", "--kills", "5", "--outage", "3s"}, want: small},
		{name: "scenario defaults, then flags", args: []string{"--payments", "500", "--scenario", "rebalance-kills", "--liveness", "1m"}, want: issue10},
		{name: "unknown scenario", args: []string{"--scenario", "nope"}, wantErr: []string{`scenario "nope"`}},
		{name: "never devkafka", args: []string{"--kill", "gateway,devkafka"}, wantErr: []string{`kill "devkafka"`}},
		{name: "follow-ups follow kills", args: []string{"--kills", "2", "--quick-kills", "2", "--restart-kills", "1"}, wantErr: []string{"quick-kills 2 + restart-kills 1"}},
		{name: "every problem at once", args: []string{"--users", "0", "--sim-error-rate", "2", "--brokers", "0", "--schedule", "sometimes", "--liveness", "0s"},
			wantErr: []string{"users 0", "sim-error-rate 2", "brokers 0", `schedule "sometimes"`, "liveness 0s"}},
		{name: "no positional arguments", args: []string{"now"}, wantErr: []string{`unexpected argument "now"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseFlags(tt.args, io.Discard)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("ParseFlags(%q) = nil error, want %q", tt.args, tt.wantErr)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
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

func TestReportOK(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mod  func(*Report)
		want bool
	}{
		{"clean", func(*Report) {}, true},
		{"lost", func(r *Report) { r.Lost = 1 }, false},
		{"paid twice", func(r *Report) { r.PaidTwice = 1 }, false},
		{"balance", func(r *Report) { r.BalanceMismatches = 1 }, false},
		{"overdraft", func(r *Report) { r.Overdrafts = 1 }, false},
		{"stuck", func(r *Report) { r.Stuck = 1 }, false},
		{"unknown", func(r *Report) { r.Unknown = 1 }, false},
		{"kills short", func(r *Report) { r.KillsShort = []string{"gateway working 9/10"} }, false},
		{"not final at the deadline", func(r *Report) { r.NonFinalAtDeadline = 1 }, false},
		{"liveness not checked", func(r *Report) { r.LivenessChecked = false }, false},
		{"drain timed out", func(r *Report) { r.DrainTimedOut = true }, false},
		{"checker not run", func(r *Report) { r.Verify = nil }, false},
		{"webhooks not checked", func(r *Report) { r.WebhooksChecked = false }, false},
		{"webhook missing", func(r *Report) { r.WebhookMissing = 1 }, false},
		{"webhook signature refused", func(r *Report) { r.WebhookBadSignatures = 1 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := &Report{Verify: &verifyReportOK, LivenessChecked: true, WebhooksChecked: true}
			tt.mod(r)
			if got := r.OK(); got != tt.want {
				t.Errorf("OK() = %t, want %t", got, tt.want)
			}
		})
	}
}

// verifyReportOK is a checker report without findings.
var verifyReportOK = verify.Report{}
