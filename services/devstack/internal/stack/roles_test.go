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

// Every service that connects to PostgreSQL has a role, and so does the
// periodic reconciler ("financectl", reconcile --watch): finance_reconciler,
// not the schema's owner.
func TestServiceRolesCoverTheServices(t *testing.T) {
	for _, s := range []string{"gateway", "outbox-relay", "dispatcher", "status-consumer", "webhook-delivery", "financectl"} {
		if !strings.HasPrefix(serviceRoles[s], "finance_") {
			t.Errorf("service %s has no role (%q)", s, serviceRoles[s])
		}
	}
	if serviceRoles["financectl"] != "finance_reconciler" {
		t.Errorf("the reconciler connects as %q, want finance_reconciler", serviceRoles["financectl"])
	}
}

// The console's reconcile URL is the reconciler's (finance_reconciler,
// which may settle, as finance_gateway may not; never the owner's user or
// password) with an application_name of its own, whatever the URL named.
func TestGatewayReconcileURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://postgres@127.0.0.1:5432/finance", "postgres://finance_reconciler@127.0.0.1:5432/finance?application_name=gateway-reconcile"},
		{"postgres://owner:s3cret@db.example:6432/finance?sslmode=require&application_name=x",
			"postgres://finance_reconciler@db.example:6432/finance?application_name=gateway-reconcile&sslmode=require"},
		{"postgresql://127.0.0.1/finance?user=postgres&password=pw",
			"postgresql://finance_reconciler@127.0.0.1/finance?application_name=gateway-reconcile"},
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
