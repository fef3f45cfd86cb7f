package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/finsvc/finance/pkg/envconfig"
)

// SecurityOpts returns the client options for an external cluster's SASL
// and TLS (envconfig.KafkaSecurity, read from KAFKA_SASL_* and
// KAFKA_TLS_*): none for the zero value. Pass them to NewClient, or append
// them to BaseOpts, in every client a service makes.
func SecurityOpts(s envconfig.KafkaSecurity) ([]kgo.Opt, error) {
	var opts []kgo.Opt
	user, pass := s.SASLUsername, s.SASLPassword.Reveal()
	switch s.SASLMechanism {
	case "":
	case envconfig.SASLPlain:
		opts = append(opts, kgo.SASL(plain.Auth{User: user, Pass: pass}.AsMechanism()))
	case envconfig.SASLScramSHA256:
		opts = append(opts, kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()))
	case envconfig.SASLScramSHA512:
		opts = append(opts, kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()))
	default:
		return nil, fmt.Errorf("kafka SASL mechanism %q: want %s, %s or %s", s.SASLMechanism,
			envconfig.SASLPlain, envconfig.SASLScramSHA256, envconfig.SASLScramSHA512)
	}
	if s.TLS {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: s.TLSServerName}
		if s.TLSCAFile != "" {
			pem, err := os.ReadFile(s.TLSCAFile)
			if err != nil {
				return nil, fmt.Errorf("kafka TLS CA: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("kafka TLS CA %s: no PEM certificate in it", s.TLSCAFile)
			}
			cfg.RootCAs = pool
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	return opts, nil
}
