package kafka_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/finsvc/finance/pkg/envconfig"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/kafkatest"
)

// selfSigned returns a certificate for 127.0.0.1 and its PEM, written to a
// file that serves as the CA.
func selfSigned(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kafka.test"},
		DNSNames:              []string{"kafka.test"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, caFile
}

// ping asks the cluster for metadata through a client with opts, bounded
// so that a refused handshake ends the call.
func ping(brokers []string, opts []kgo.Opt) error {
	cl, err := kafka.NewClient(brokers, slog.New(slog.DiscardHandler), append(opts, kgo.RetryTimeout(2*time.Second))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return cl.Ping(ctx)
}

// A cluster that wants SCRAM-SHA-512 over TLS: the settings of the chart's
// production values reach it; a wrong password, no SASL or no TLS do not.
func TestSecurityOptsAgainstSASLAndTLS(t *testing.T) {
	t.Parallel()
	cert, caFile := selfSigned(t)
	c := kafkatest.New(t, 1, []string{"t"},
		kfake.EnableSASL(),
		kfake.Superuser(envconfig.SASLScramSHA512, "finance", "s3cret"),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}),
	)
	good := envconfig.KafkaSecurity{
		SASLMechanism: envconfig.SASLScramSHA512, SASLUsername: "finance", SASLPassword: "s3cret",
		TLS: true, TLSCAFile: caFile,
	}
	for _, tc := range []struct {
		name string
		sec  func(envconfig.KafkaSecurity) envconfig.KafkaSecurity
		ok   bool
	}{
		{"SCRAM-SHA-512 over TLS with the CA", func(s envconfig.KafkaSecurity) envconfig.KafkaSecurity { return s }, true},
		{"server name checked against the certificate", func(s envconfig.KafkaSecurity) envconfig.KafkaSecurity {
			s.TLSServerName = "kafka.test"
			return s
		}, true},
		{"wrong server name", func(s envconfig.KafkaSecurity) envconfig.KafkaSecurity {
			s.TLSServerName = "other.test"
			return s
		}, false},
		{"wrong password", func(s envconfig.KafkaSecurity) envconfig.KafkaSecurity {
			s.SASLPassword = "nope"
			return s
		}, false},
		{"no SASL", func(s envconfig.KafkaSecurity) envconfig.KafkaSecurity {
			s.SASLMechanism = ""
			return s
		}, false},
		{"no TLS", func(s envconfig.KafkaSecurity) envconfig.KafkaSecurity {
			s.TLS, s.TLSCAFile = false, ""
			return s
		}, false},
		{"TLS with the system roots only", func(s envconfig.KafkaSecurity) envconfig.KafkaSecurity {
			s.TLSCAFile = ""
			return s
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts, err := kafka.SecurityOpts(tc.sec(good))
			if err != nil {
				t.Fatal(err)
			}
			err = ping(c.Brokers(), opts)
			if tc.ok && err != nil {
				t.Errorf("ping: %v", err)
			}
			if !tc.ok && err == nil {
				t.Error("ping succeeded, want it refused")
			}
		})
	}
}

func TestSecurityOptsRefusesBadSettings(t *testing.T) {
	t.Parallel()
	if opts, err := kafka.SecurityOpts(envconfig.KafkaSecurity{}); err != nil || len(opts) != 0 {
		t.Errorf("zero value: %d options, %v; want none", len(opts), err)
	}
	notPEM := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		sec  envconfig.KafkaSecurity
		want string
	}{
		{"unknown mechanism", envconfig.KafkaSecurity{SASLMechanism: "GSSAPI"}, `"GSSAPI"`},
		{"missing CA file", envconfig.KafkaSecurity{TLS: true, TLSCAFile: filepath.Join(t.TempDir(), "none.crt")}, "kafka TLS CA"},
		{"CA file without a certificate", envconfig.KafkaSecurity{TLS: true, TLSCAFile: notPEM}, "no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := kafka.SecurityOpts(tc.sec)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("SecurityOpts = %v, want an error with %q", err, tc.want)
			}
		})
	}
}
