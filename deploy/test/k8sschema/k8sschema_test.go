package k8sschema

import (
	"strings"
	"testing"
)

// The validator is strict and typed: a valid Deployment passes; a misspelt
// field, a wrong type and a missing required field each fail.
func TestValidate(t *testing.T) {
	t.Parallel()
	v, err := New()
	if err != nil {
		t.Fatal(err)
	}
	const valid = `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x"},
	 "spec":{"replicas":2,"selector":{"matchLabels":{"a":"b"}},
	  "strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":"25%","maxUnavailable":0}},
	  "template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"i",
	   "resources":{"limits":{"memory":"128Mi","cpu":1}},
	   "livenessProbe":{"httpGet":{"path":"/healthz","port":"ops"}}}]}}}}`
	if err := v.Validate([]byte(valid)); err != nil {
		t.Fatalf("valid Deployment: %v", err)
	}
	for _, tc := range []struct {
		name, from, to, want string
	}{
		{"misspelt field", `"replicas":2`, `"replicass":2`, "replicass"},
		{"wrong type", `"replicas":2`, `"replicas":"two"`, "replicas"},
		{"missing required", `"name":"c",`, ``, "name"},
		{"unknown field deep down", `"path":"/healthz"`, `"paht":"/healthz"`, "paht"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			obj := strings.Replace(valid, tc.from, tc.to, 1)
			err := v.Validate([]byte(obj))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v, want an error naming %q", err, tc.want)
			}
		})
	}
	if err := v.Validate([]byte(`{"apiVersion":"example.com/v1","kind":"Widget"}`)); err == nil {
		t.Error("an unknown kind validated")
	}
	if !v.Knows("policy/v1", "PodDisruptionBudget") || v.Knows("monitoring.coreos.com/v1", "ServiceMonitor") {
		t.Error("Knows is wrong about the vendored kinds")
	}
}
