package stack

import (
	"strings"
	"testing"
)

// A service's URL is the stack's with the service's role as its user: the
// same host, port, database and parameters, and neither the owner's
// password nor a user given as a parameter.
func TestRoleURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://postgres@127.0.0.1:5432/finance", "postgres://finance_gateway@127.0.0.1:5432/finance"},
		{"postgres://owner:s3cret@db.example:6432/finance?sslmode=require&application_name=x",
			"postgres://finance_gateway@db.example:6432/finance?sslmode=require&application_name=x"},
		{"postgresql://127.0.0.1/finance?user=postgres&password=pw&sslmode=disable",
			"postgresql://finance_gateway@127.0.0.1/finance?sslmode=disable"},
		{"postgres:///finance?host=/var/run/postgresql", "postgres://finance_gateway@/finance?host=/var/run/postgresql"},
	}
	for _, tt := range tests {
		got, err := roleURL(tt.in, "finance_gateway")
		if err != nil || got != tt.want {
			t.Errorf("roleURL(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	// A keyword/value string cannot be rewritten safely: refused, and
	// the error does not show the password.
	_, err := roleURL("host=127.0.0.1 user=postgres password=s3cret dbname=finance", "finance_gateway")
	if err == nil || !strings.Contains(err.Error(), "DEVSTACK_SERVICE_ROLES=false") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("roleURL of a keyword/value string: %v; want a refusal naming DEVSTACK_SERVICE_ROLES=false, without the password", err)
	}
}

// Every service that connects to PostgreSQL has a role; financectl, the
// operator's tool, has none (it is the schema's owner).
func TestServiceRolesCoverTheServices(t *testing.T) {
	for _, s := range []string{"gateway", "outbox-relay", "dispatcher", "status-consumer", "webhook-delivery"} {
		if !strings.HasPrefix(serviceRoles[s], "finance_") {
			t.Errorf("service %s has no role (%q)", s, serviceRoles[s])
		}
	}
	if _, ok := serviceRoles["financectl"]; ok {
		t.Error("financectl must connect as the URL's user, the schema's owner")
	}
}

// The console's reconcile URL is financectl's (the URL's user and
// password: it settles, which finance_gateway may not) with an
// application_name of its own, whatever the URL named.
func TestGatewayReconcileURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://postgres@127.0.0.1:5432/finance", "postgres://postgres@127.0.0.1:5432/finance?application_name=gateway-reconcile"},
		{"postgres://owner:s3cret@db.example:6432/finance?sslmode=require&application_name=x",
			"postgres://owner:s3cret@db.example:6432/finance?application_name=gateway-reconcile&sslmode=require"},
	}
	for _, tt := range tests {
		got, err := gatewayReconcileURL(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("gatewayReconcileURL(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	_, err := gatewayReconcileURL("host=127.0.0.1 user=postgres password=s3cret dbname=finance")
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("gatewayReconcileURL of a keyword/value string: %v; want a refusal without the password", err)
	}
}
