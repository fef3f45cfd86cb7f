package envconfig

import (
	"log/slog"
	"strings"
)

// SASL mechanisms KAFKA_SASL_MECHANISM accepts.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// KafkaSecurity is how a service authenticates to and encrypts its
// connections with an external Kafka cluster (a managed one, or the Helm
// chart's kafka.sasl and kafka.tls). pkg/kafka's SecurityOpts turns it into
// client options. The zero value is plaintext without authentication.
type KafkaSecurity struct {
	// SASLMechanism (KAFKA_SASL_MECHANISM) is empty (no SASL), PLAIN,
	// SCRAM-SHA-256 or SCRAM-SHA-512.
	SASLMechanism string
	SASLUsername  string // KAFKA_SASL_USERNAME
	SASLPassword  Secret // KAFKA_SASL_PASSWORD
	// TLS (KAFKA_TLS_ENABLED) encrypts every connection to the brokers and
	// checks their certificates: against TLSCAFile (KAFKA_TLS_CA_FILE, PEM)
	// when set, else the system roots; TLSServerName
	// (KAFKA_TLS_SERVER_NAME) overrides the name checked.
	TLS           bool
	TLSCAFile     string
	TLSServerName string
}

// LoadKafkaSecurity reads KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME,
// KAFKA_SASL_PASSWORD, KAFKA_TLS_ENABLED, KAFKA_TLS_CA_FILE and
// KAFKA_TLS_SERVER_NAME, recording every inconsistency: an unknown
// mechanism, a mechanism without credentials, credentials without a
// mechanism, TLS settings with TLS off.
func LoadKafkaSecurity(r *Reader) KafkaSecurity {
	s := KafkaSecurity{
		SASLMechanism: strings.ToUpper(r.String("KAFKA_SASL_MECHANISM", "")),
		SASLUsername:  r.String("KAFKA_SASL_USERNAME", ""),
		SASLPassword:  r.Secret("KAFKA_SASL_PASSWORD", ""),
		TLS:           r.Bool("KAFKA_TLS_ENABLED", false),
		TLSCAFile:     r.String("KAFKA_TLS_CA_FILE", ""),
		TLSServerName: r.String("KAFKA_TLS_SERVER_NAME", ""),
	}
	switch s.SASLMechanism {
	case "":
		if s.SASLUsername != "" || s.SASLPassword != "" {
			r.Fail("KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD are set without KAFKA_SASL_MECHANISM: want %s, %s or %s", SASLPlain, SASLScramSHA256, SASLScramSHA512)
		}
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if s.SASLUsername == "" || s.SASLPassword == "" {
			r.Fail("KAFKA_SASL_MECHANISM=%s: want KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD", s.SASLMechanism)
		}
	default:
		r.Fail("KAFKA_SASL_MECHANISM=%q: want %s, %s or %s", s.SASLMechanism, SASLPlain, SASLScramSHA256, SASLScramSHA512)
	}
	if !s.TLS && (s.TLSCAFile != "" || s.TLSServerName != "") {
		r.Fail("KAFKA_TLS_CA_FILE/KAFKA_TLS_SERVER_NAME are set but KAFKA_TLS_ENABLED is not true")
	}
	return s
}

// LogValue logs the mechanism, the user and the TLS settings, never the
// password.
func (s KafkaSecurity) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("sasl_mechanism", s.SASLMechanism),
		slog.String("sasl_username", s.SASLUsername),
		slog.Bool("tls", s.TLS),
		slog.String("tls_ca_file", s.TLSCAFile),
		slog.String("tls_server_name", s.TLSServerName),
	)
}
