package envconfig

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLoadKafkaSecurity(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  map[string]string
		want KafkaSecurity
		errs []string
	}{
		{name: "none: plaintext", env: map[string]string{}},
		{
			name: "SCRAM over TLS with a CA",
			env: map[string]string{
				"KAFKA_SASL_MECHANISM": "scram-sha-512", "KAFKA_SASL_USERNAME": "finance", "KAFKA_SASL_PASSWORD": "pw",
				"KAFKA_TLS_ENABLED": "true", "KAFKA_TLS_CA_FILE": "/etc/ca.crt", "KAFKA_TLS_SERVER_NAME": "kafka.example.com",
			},
			want: KafkaSecurity{SASLMechanism: SASLScramSHA512, SASLUsername: "finance", SASLPassword: "pw", TLS: true, TLSCAFile: "/etc/ca.crt", TLSServerName: "kafka.example.com"},
		},
		{
			name: "PLAIN",
			env:  map[string]string{"KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"},
			want: KafkaSecurity{SASLMechanism: SASLPlain, SASLUsername: "u", SASLPassword: "p"},
		},
		{name: "TLS with the system roots", env: map[string]string{"KAFKA_TLS_ENABLED": "1"}, want: KafkaSecurity{TLS: true}},
		{
			name: "unknown mechanism",
			env:  map[string]string{"KAFKA_SASL_MECHANISM": "GSSAPI", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"},
			errs: []string{`KAFKA_SASL_MECHANISM="GSSAPI"`},
		},
		{
			name: "mechanism without a password",
			env:  map[string]string{"KAFKA_SASL_MECHANISM": "SCRAM-SHA-256", "KAFKA_SASL_USERNAME": "u"},
			errs: []string{"want KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"},
		},
		{
			name: "credentials without a mechanism, CA without TLS, and a bad boolean: all reported",
			env:  map[string]string{"KAFKA_SASL_USERNAME": "u", "KAFKA_TLS_CA_FILE": "/ca", "KAFKA_TLS_ENABLED": "yes please"},
			errs: []string{"without KAFKA_SASL_MECHANISM", "KAFKA_TLS_ENABLED is not true", `KAFKA_TLS_ENABLED="yes please": not a boolean`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := New(func(k string) string { return tc.env[k] })
			got := LoadKafkaSecurity(r)
			err := r.Err()
			if len(tc.errs) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("LoadKafkaSecurity (-want +got):\n%s", diff)
				}
				return
			}
			for _, want := range tc.errs {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("error %v lacks %q", err, want)
				}
			}
		})
	}
}

// LoadKafka carries the security settings, and the start line never shows
// the password.
func TestLoadKafkaCarriesSecurityAndRedactsThePassword(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"KAFKA_BROKERS": "b1:9096,b2:9096", "KAFKA_SASL_MECHANISM": "PLAIN",
		"KAFKA_SASL_USERNAME": "finance", "KAFKA_SASL_PASSWORD": "hunter2-secret", "KAFKA_TLS_ENABLED": "true",
	}
	r := New(func(k string) string { return env[k] })
	k := LoadKafka(r, true)
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if k.Security.SASLPassword.Reveal() != "hunter2-secret" || !k.Security.TLS {
		t.Fatalf("security not loaded: %+v", k.Security)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("starting", "kafka", k)
	line := buf.String()
	if strings.Contains(line, "hunter2") {
		t.Errorf("the password reached the log: %s", line)
	}
	for _, want := range []string{`"sasl_mechanism":"PLAIN"`, `"sasl_username":"finance"`, `"tls":true`, `"brokers":"b1:9096,b2:9096"`} {
		if !strings.Contains(line, want) {
			t.Errorf("log line lacks %s: %s", want, line)
		}
	}
}
