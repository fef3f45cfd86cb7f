// Package chart_test renders the Helm chart deploy/helm/finance with the
// values files of its ci/ folder and checks what every install must hold:
// every container has resource limits, runs as non-root on a read-only root
// filesystem with no capabilities and the RuntimeDefault seccomp profile;
// every Deployment's container has liveness and readiness probes on its
// ops port; every worker has a PodDisruptionBudget; the dispatcher never has
// more replicas than partitions; secrets only come from Secrets; and every
// object is valid against the Kubernetes OpenAPI schemas of a recent release
// (k8sschema, vendored).
//
// It needs helm: $HELM, or .run/tools/helm as `make helm` builds it (`make
// test` does so first).
package chart_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/finsvc/finance/deploy/test/k8sschema"
)

// kubeVersion is the cluster version helm renders for: that of the vendored
// schemas.
var kubeVersion = strings.TrimPrefix(k8sschema.Version, "v")

// obj is one rendered manifest.
type obj = map[string]any

// setup finds helm and the chart.
func setup(t *testing.T) (helm, chart string) {
	t.Helper()
	out, err := exec.Command("go", "env", "GOWORK").Output()
	root := filepath.Dir(strings.TrimSpace(string(out)))
	if err != nil || root == "." {
		t.Fatalf("find the repository root through go env GOWORK: %v", err)
	}
	helm = os.Getenv("HELM")
	if helm == "" {
		helm = filepath.Join(root, ".run", "tools", "helm")
	}
	if _, err := os.Stat(helm); err != nil {
		t.Fatalf("helm not found at %s: run `make helm` (it builds the pinned helm from the Go module proxy) or set HELM", helm)
	}
	return helm, filepath.Join(root, "deploy", "helm", "finance")
}

// render runs helm template with the values files and --set pairs, and
// returns the objects, or helm's error output.
func render(t *testing.T, helm, chart string, files []string, sets ...string) ([]obj, error) {
	t.Helper()
	args := []string{"template", "finance", chart, "--namespace", "finance", "--kube-version", kubeVersion}
	for _, f := range files {
		args = append(args, "-f", filepath.Join(chart, "ci", f))
	}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(helm, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("helm %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	var objs []obj
	for _, doc := range strings.Split(stdout.String(), "\n---") {
		var o obj
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("rendered YAML does not parse: %v\n%s", err, doc)
		}
		if len(o) > 0 {
			objs = append(objs, o)
		}
	}
	return objs, nil
}

func TestChartRendersValidManifests(t *testing.T) {
	t.Parallel()
	helm, chart := setup(t)
	validator, err := k8sschema.New()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file string
		// want are kinds the install must hold, with their count.
		want map[string]int
	}{
		{"default-values.yaml", map[string]int{
			"Deployment": 6, "Job": 1, "PodDisruptionBudget": 5, "HorizontalPodAutoscaler": 1, "NetworkPolicy": 6,
		}},
		{"production-values.yaml", map[string]int{
			"Deployment": 6, "Job": 1, "PodDisruptionBudget": 5, "HorizontalPodAutoscaler": 1, "NetworkPolicy": 6,
			"ServiceMonitor": 1, "PrometheusRule": 1, "Ingress": 1,
		}},
		{"minimal-values.yaml", map[string]int{
			"Deployment": 6, "Job": 1, "PodDisruptionBudget": 3, "HorizontalPodAutoscaler": 0, "NetworkPolicy": 0,
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			objs, err := render(t, helm, chart, []string{tc.file})
			if err != nil {
				t.Fatal(err)
			}
			count := map[string]int{}
			for _, o := range objs {
				count[str(o, "kind")]++
			}
			for kind, n := range tc.want {
				if count[kind] != n {
					t.Errorf("%d %s objects, want %d", count[kind], kind, n)
				}
			}
			checkSchemas(t, validator, objs)
			checkPods(t, objs)
			checkBudgets(t, objs)
			checkDispatcher(t, objs)
			checkHooks(t, objs)
			checkHPA(t, objs)
			checkPolicies(t, objs)
		})
	}
}

// checkSchemas validates every object against the vendored Kubernetes
// schemas. The Prometheus Operator's kinds have none there; they get a
// check of their shape instead.
func checkSchemas(t *testing.T, v *k8sschema.Validator, objs []obj) {
	t.Helper()
	for _, o := range objs {
		apiVersion, kind := str(o, "apiVersion"), str(o, "kind")
		if apiVersion == "monitoring.coreos.com/v1" {
			switch kind {
			case "ServiceMonitor":
				if len(list(o, "spec", "endpoints")) == 0 || len(m(o, "spec", "selector", "matchLabels")) == 0 {
					t.Errorf("ServiceMonitor %s: no endpoints or selector", name(o))
				}
			case "PrometheusRule":
				if len(list(o, "spec", "groups")) == 0 {
					t.Errorf("PrometheusRule %s: no groups", name(o))
				}
			default:
				t.Errorf("%s %s: no check for this kind", kind, name(o))
			}
			continue
		}
		b, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Validate(b); err != nil {
			t.Errorf("%s %s is not valid for Kubernetes %s: %v", kind, name(o), k8sschema.Version, err)
		}
	}
}

// checkPods checks every container of every Deployment and Job.
func checkPods(t *testing.T, objs []obj) {
	t.Helper()
	for _, o := range objs {
		kind := str(o, "kind")
		if kind != "Deployment" && kind != "Job" {
			continue
		}
		pod := m(o, "spec", "template", "spec")
		podSC := m(pod, "securityContext")
		containers := append(list(pod, "containers"), list(pod, "initContainers")...)
		if len(containers) == 0 {
			t.Errorf("%s %s has no containers", kind, name(o))
		}
		ports := map[string]bool{}
		for _, c := range containers {
			c := c.(obj)
			where := fmt.Sprintf("%s %s container %s", kind, name(o), str(c, "name"))
			for _, p := range list(c, "ports") {
				p := p.(obj)
				ports[str(p, "name")] = true
				ports[fmt.Sprint(p["containerPort"])] = true
			}
			if str(c, "resources", "limits", "memory") == "" {
				t.Errorf("%s: no memory limit", where)
			}
			if str(c, "resources", "requests", "cpu") == "" || str(c, "resources", "requests", "memory") == "" {
				t.Errorf("%s: no cpu and memory requests", where)
			}
			sc := m(c, "securityContext")
			if !(sc["runAsNonRoot"] == true || (sc["runAsNonRoot"] == nil && podSC["runAsNonRoot"] == true)) {
				t.Errorf("%s: not runAsNonRoot", where)
			}
			if uid, ok := sc["runAsUser"]; ok && fmt.Sprint(uid) == "0" {
				t.Errorf("%s: runs as user 0", where)
			}
			if uid, ok := podSC["runAsUser"]; ok && fmt.Sprint(uid) == "0" {
				t.Errorf("%s: pod runs as user 0", where)
			}
			if sc["readOnlyRootFilesystem"] != true {
				t.Errorf("%s: root filesystem not read-only", where)
			}
			if sc["allowPrivilegeEscalation"] != false {
				t.Errorf("%s: allowPrivilegeEscalation not false", where)
			}
			if !slices.Contains(list(sc, "capabilities", "drop"), any("ALL")) || len(list(sc, "capabilities", "add")) > 0 {
				t.Errorf("%s: capabilities not dropped (%v)", where, sc["capabilities"])
			}
			seccomp := str(sc, "seccompProfile", "type")
			if seccomp == "" {
				seccomp = str(podSC, "seccompProfile", "type")
			}
			if seccomp != "RuntimeDefault" {
				t.Errorf("%s: seccomp profile %q, want RuntimeDefault", where, seccomp)
			}
			for _, e := range list(c, "env") {
				e := e.(obj)
				n := str(e, "name")
				if (n == "DATABASE_URL" || n == "DATABASE_READ_URL" || n == "AUTH_JWT_SECRET" || n == "KAFKA_SASL_PASSWORD" || n == "KAFKA_SASL_USERNAME") &&
					str(e, "valueFrom", "secretKeyRef", "name") == "" {
					t.Errorf("%s: %s does not come from a Secret", where, n)
				}
			}
		}
		if kind != "Deployment" {
			continue
		}
		for _, c := range list(pod, "containers") {
			c := c.(obj)
			where := fmt.Sprintf("Deployment %s container %s", name(o), str(c, "name"))
			for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
				got := str(c, probe, "httpGet", "path")
				port := fmt.Sprint(m(c, probe, "httpGet")["port"])
				if strings.HasPrefix(name(o), "finance-processor-sim") && probe == "readinessProbe" {
					path = "/healthz" // the simulator has no readiness of its own
				}
				if got != path || !ports[port] {
					t.Errorf("%s: %s is %q on port %s, want %s on a declared port", where, probe, got, port, path)
				}
			}
		}
	}
}

// checkBudgets: every Deployment with more than one replica (or an HPA) has
// a PodDisruptionBudget that selects its pods and lets at least one go.
func checkBudgets(t *testing.T, objs []obj) {
	t.Helper()
	var pdbs []obj
	hpa := map[string]bool{}
	for _, o := range objs {
		switch str(o, "kind") {
		case "PodDisruptionBudget":
			pdbs = append(pdbs, o)
		case "HorizontalPodAutoscaler":
			hpa[str(o, "spec", "scaleTargetRef", "name")] = true
		}
	}
	for _, o := range objs {
		if str(o, "kind") != "Deployment" {
			continue
		}
		replicas := num(o, "spec", "replicas")
		if replicas <= 1 && !hpa[name(o)] {
			continue
		}
		labels := m(o, "spec", "template", "metadata", "labels")
		found := false
		for _, p := range pdbs {
			if selects(m(p, "spec", "selector", "matchLabels"), labels) {
				found = true
				if num(p, "spec", "maxUnavailable") < 1 && m(p, "spec")["minAvailable"] == nil {
					t.Errorf("PodDisruptionBudget %s lets no pod go", name(p))
				}
			}
		}
		if !found {
			t.Errorf("Deployment %s (%d replicas) has no PodDisruptionBudget", name(o), replicas)
		}
	}
}

// checkDispatcher: the dispatcher's replicas never exceed the partitions
// its pods are told the topics have.
func checkDispatcher(t *testing.T, objs []obj) {
	t.Helper()
	for _, o := range objs {
		if str(o, "kind") != "Deployment" || !strings.HasSuffix(name(o), "-dispatcher") {
			continue
		}
		partitions := -1
		for _, e := range list(list(m(o, "spec", "template", "spec"), "containers")[0].(obj), "env") {
			if str(e.(obj), "name") == "KAFKA_PARTITIONS" {
				partitions, _ = strconv.Atoi(str(e.(obj), "value"))
			}
		}
		if replicas := num(o, "spec", "replicas"); partitions < 1 || replicas > partitions {
			t.Errorf("dispatcher: %d replicas for %d partitions", replicas, partitions)
		}
		return
	}
	t.Error("no dispatcher Deployment")
}

// checkHooks: the migrate Job runs before install and upgrade, migrates in
// an init container, then creates the topics.
func checkHooks(t *testing.T, objs []obj) {
	t.Helper()
	for _, o := range objs {
		if str(o, "kind") != "Job" {
			continue
		}
		if got := str(o, "metadata", "annotations", "helm.sh/hook"); got != "pre-install,pre-upgrade" {
			t.Errorf("Job %s: hook %q", name(o), got)
		}
		pod := m(o, "spec", "template", "spec")
		var args []string
		for _, c := range append(list(pod, "initContainers"), list(pod, "containers")...) {
			args = append(args, fmt.Sprint(m(c.(obj))["args"]))
		}
		if want := []string{"[migrate up]", "[topics create]"}; !slices.Equal(args, want) {
			t.Errorf("Job %s runs %v, want %v", name(o), args, want)
		}
	}
}

// checkHPA: the gateway's HPA targets its Deployment, which then leaves
// replicas to it.
func checkHPA(t *testing.T, objs []obj) {
	t.Helper()
	for _, o := range objs {
		if str(o, "kind") != "HorizontalPodAutoscaler" {
			continue
		}
		target := str(o, "spec", "scaleTargetRef", "name")
		if !strings.HasSuffix(target, "-gateway") {
			t.Errorf("HPA %s scales %s", name(o), target)
		}
		for _, d := range objs {
			if str(d, "kind") == "Deployment" && name(d) == target && m(d, "spec")["replicas"] != nil {
				t.Errorf("Deployment %s sets replicas although the HPA owns them", target)
			}
		}
	}
}

// checkPolicies: where NetworkPolicies are rendered, every Deployment's
// pods are selected by one, which admits traffic to each port the pod
// declares (its API or metrics) and lets it resolve names (DNS on 53).
func checkPolicies(t *testing.T, objs []obj) {
	t.Helper()
	var policies []obj
	for _, o := range objs {
		if str(o, "kind") == "NetworkPolicy" {
			policies = append(policies, o)
		}
	}
	if len(policies) == 0 {
		return
	}
	for _, d := range objs {
		if str(d, "kind") != "Deployment" {
			continue
		}
		labels := m(d, "spec", "template", "metadata", "labels")
		var selecting []obj
		for _, p := range policies {
			if selects(m(p, "spec", "podSelector", "matchLabels"), labels) {
				selecting = append(selecting, p)
			}
		}
		if len(selecting) != 1 {
			t.Errorf("Deployment %s is selected by %d NetworkPolicies, want 1", name(d), len(selecting))
			continue
		}
		p := selecting[0]
		admitted := map[string]bool{}
		for _, rule := range list(p, "spec", "ingress") {
			for _, port := range list(rule.(obj), "ports") {
				admitted[fmt.Sprint(port.(obj)["port"])] = true
			}
		}
		for _, c := range list(m(d, "spec", "template", "spec"), "containers") {
			for _, port := range list(c.(obj), "ports") {
				if n := fmt.Sprint(port.(obj)["containerPort"]); !admitted[n] {
					t.Errorf("NetworkPolicy %s does not admit port %s of Deployment %s", name(p), n, name(d))
				}
			}
		}
		dns := false
		for _, rule := range list(p, "spec", "egress") {
			for _, port := range list(rule.(obj), "ports") {
				dns = dns || fmt.Sprint(port.(obj)["port"]) == "53"
			}
		}
		if !dns {
			t.Errorf("NetworkPolicy %s lets %s resolve no names", name(p), name(d))
		}
	}
}

// The production values wire the external Kafka's SASL and TLS into every
// container that talks to Kafka, and the read DSN into the gateway.
func TestProductionValuesReachTheContainers(t *testing.T) {
	t.Parallel()
	helm, chart := setup(t)
	objs, err := render(t, helm, chart, []string{"production-values.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	kafkaContainers := 0
	for _, o := range objs {
		kind := str(o, "kind")
		if kind != "Deployment" && kind != "Job" {
			continue
		}
		pod := m(o, "spec", "template", "spec")
		for _, c := range append(list(pod, "containers"), list(pod, "initContainers")...) {
			c := c.(obj)
			env := map[string]obj{}
			for _, e := range list(c, "env") {
				env[str(e.(obj), "name")] = e.(obj)
			}
			if _, ok := env["KAFKA_BROKERS"]; !ok {
				continue
			}
			kafkaContainers++
			where := name(o) + "/" + str(c, "name")
			if got := str(env["KAFKA_BROKERS"], "value"); got != "b-1.kafka.example.com:9096,b-2.kafka.example.com:9096,b-3.kafka.example.com:9096" {
				t.Errorf("%s: KAFKA_BROKERS=%q", where, got)
			}
			if str(env["KAFKA_SASL_MECHANISM"], "value") != "SCRAM-SHA-512" ||
				str(env["KAFKA_SASL_PASSWORD"], "valueFrom", "secretKeyRef", "name") != "finance-kafka" ||
				str(env["KAFKA_TLS_ENABLED"], "value") != "true" ||
				str(env["KAFKA_TLS_CA_FILE"], "value") != "/etc/finance/kafka-ca/ca.crt" {
				t.Errorf("%s: SASL/TLS settings missing: %v", where, env)
			}
			mounted := false
			for _, vm := range list(c, "volumeMounts") {
				mounted = mounted || str(vm.(obj), "mountPath") == "/etc/finance/kafka-ca"
			}
			if !mounted {
				t.Errorf("%s: the Kafka CA is not mounted", where)
			}
			if strings.HasSuffix(name(o), "-gateway") && str(env["DATABASE_READ_URL"], "valueFrom", "secretKeyRef", "key") != "DATABASE_READ_URL" {
				t.Errorf("%s: no DATABASE_READ_URL from the Secret", where)
			}
		}
	}
	// gateway, outbox-relay, dispatcher, status-consumer, webhook-delivery,
	// the reconciler (lag and dead-letter depth), and the hook's topics
	// container.
	if kafkaContainers != 7 {
		t.Errorf("%d containers talk to Kafka, want 7", kafkaContainers)
	}
}

// Least privilege: with database.serviceUrlKeys (the production values set
// them) each service's DATABASE_URL, the reconciler's included
// (finance_reconciler), is its own key of the Secret, its own role's URL;
// the migrate Job keeps the owner's (urlKey). Without them (the default
// values) every one is urlKey.
func TestServicesGetTheirOwnDatabaseURL(t *testing.T) {
	t.Parallel()
	helm, chart := setup(t)
	for file, want := range map[string]map[string]string{
		"production-values.yaml": {
			"gateway": "DATABASE_URL_GATEWAY", "outbox-relay": "DATABASE_URL_OUTBOX_RELAY",
			"dispatcher": "DATABASE_URL_DISPATCHER", "status-consumer": "DATABASE_URL_STATUS_CONSUMER",
			"webhook-delivery": "DATABASE_URL_WEBHOOK_DELIVERY", "reconciler": "DATABASE_URL_RECONCILER", "migrate": "DATABASE_URL",
		},
		"default-values.yaml": {
			"gateway": "DATABASE_URL", "outbox-relay": "DATABASE_URL", "dispatcher": "DATABASE_URL",
			"status-consumer": "DATABASE_URL", "webhook-delivery": "DATABASE_URL", "reconciler": "DATABASE_URL",
		},
	} {
		objs, err := render(t, helm, chart, []string{file})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		actor := ""
		for _, o := range objs {
			if kind := str(o, "kind"); kind != "Deployment" && kind != "Job" {
				continue
			}
			component := str(o, "metadata", "labels", "app.kubernetes.io/component")
			pod := m(o, "spec", "template", "spec")
			for _, c := range append(list(pod, "containers"), list(pod, "initContainers")...) {
				for _, e := range list(c.(obj), "env") {
					switch str(e.(obj), "name") {
					case "DATABASE_URL":
						got[component] = str(e.(obj), "valueFrom", "secretKeyRef", "key")
					case "FINANCE_ACTOR":
						if component == "reconciler" {
							actor = str(e.(obj), "value")
						}
					}
				}
			}
		}
		for component, key := range want {
			if got[component] != key {
				t.Errorf("%s: %s's DATABASE_URL is key %q of the Secret, want %q", file, component, got[component], key)
			}
		}
		// The reconciler's resolutions are admin_audit rows under this actor.
		if actor != "job:reconciler" {
			t.Errorf("%s: the reconciler's FINANCE_ACTOR is %q, want job:reconciler", file, actor)
		}
	}
}

// The gateway's ops port (gateway.opsPort): OPS_ADDR, a declared port, an
// ops Service that the ServiceMonitor scrapes, and the pod's scrape
// annotations on it; its API Service is then not scraped as well. With
// opsPort 0 (the minimal values) none of it, and /metrics on the API port.
func TestGatewayOpsPort(t *testing.T) {
	t.Parallel()
	helm, chart := setup(t)
	for file, ops := range map[string]string{"production-values.yaml": "9105", "minimal-values.yaml": ""} {
		objs, err := render(t, helm, chart, []string{file})
		if err != nil {
			t.Fatal(err)
		}
		var opsAddr, scrapePort, opsService string
		dropped := false
		for _, o := range objs {
			switch {
			case str(o, "kind") == "Deployment" && strings.HasSuffix(name(o), "-gateway"):
				scrapePort = str(o, "spec", "template", "metadata", "annotations", "prometheus.io/port")
				for _, e := range list(list(m(o, "spec", "template", "spec"), "containers")[0].(obj), "env") {
					if str(e.(obj), "name") == "OPS_ADDR" {
						opsAddr = str(e.(obj), "value")
					}
				}
			case str(o, "kind") == "Service" && strings.HasSuffix(name(o), "-gateway-ops"):
				opsService = fmt.Sprint(list(o, "spec", "ports")[0].(obj)["port"])
			case str(o, "kind") == "ServiceMonitor":
				for _, ep := range list(o, "spec", "endpoints") {
					if str(ep.(obj), "port") == "http" {
						dropped = len(list(ep.(obj), "relabelings")) > 0
					}
				}
			}
		}
		if ops == "" {
			if opsAddr != "" || opsService != "" || scrapePort != "8080" {
				t.Errorf("%s: OPS_ADDR %q, ops Service port %q, scraped on %q; want none, none, 8080", file, opsAddr, opsService, scrapePort)
			}
			continue
		}
		if opsAddr != ":"+ops || opsService != ops || scrapePort != ops || !dropped {
			t.Errorf("%s: OPS_ADDR %q, ops Service port %q, scraped on %q, API Service dropped from the ServiceMonitor %v; want :%s, %s, %s, true",
				file, opsAddr, opsService, scrapePort, dropped, ops, ops, ops)
		}
	}
}

// The address block (GATEWAY_BLOCK) is off unless gateway.blockAddresses
// is set: behind the chart's Ingress every client has the proxy's address.
func TestGatewayBlockOffBehindAProxy(t *testing.T) {
	t.Parallel()
	helm, chart := setup(t)
	for _, tc := range []struct {
		sets []string
		want string
	}{{nil, "false"}, {[]string{"gateway.blockAddresses=true"}, "true"}} {
		objs, err := render(t, helm, chart, []string{"production-values.yaml"}, tc.sets...)
		if err != nil {
			t.Fatal(err)
		}
		got := "unset"
		for _, o := range objs {
			if str(o, "kind") == "Deployment" && strings.HasSuffix(name(o), "-gateway") {
				for _, e := range list(list(m(o, "spec", "template", "spec"), "containers")[0].(obj), "env") {
					if str(e.(obj), "name") == "GATEWAY_BLOCK" {
						got = str(e.(obj), "value")
					}
				}
			}
		}
		if got != tc.want {
			t.Errorf("--set %v: GATEWAY_BLOCK = %s, want %s", tc.sets, got, tc.want)
		}
	}
}

// The operator console's settings (gateway.console) reach the gateway as
// services/gateway/console.go reads them: on or off, the processor it
// resolves against (the pipeline's while processor.api is proposed; none
// with as-is, whose processor offers no lookup by key), its statement (as
// the reconciler's), L, and GATEWAY_RECONCILE_DATABASE_URL from the Secret
// (the reconciler's key, finance_reconciler's URL, once the gateway runs as
// finance_gateway, which may not settle; urlKey while the reconciler has
// none). The gateway may reach that processor through its
// NetworkPolicy, and the simulator admits it.
func TestGatewayConsoleSettings(t *testing.T) {
	t.Parallel()
	helm, chart := setup(t)
	for _, tc := range []struct {
		name string
		file string
		sets []string
		// want is every GATEWAY_CONSOLE, GATEWAY_PROCESSOR_* and
		// GATEWAY_RECONCILE_* variable: a value, or "secret:NAME/KEY".
		want map[string]string
		// processor: the gateway's NetworkPolicy lets it reach the
		// processor (the port, or the simulator's pods).
		processor string
	}{
		{"a proposed processor", "default-values.yaml", nil, map[string]string{
			"GATEWAY_CONSOLE": "true", "GATEWAY_PROCESSOR_URL": "https://processor.invalid",
			"GATEWAY_PROCESSOR_STATEMENT_URL": "none", "GATEWAY_PROCESSOR_RATE_LIMIT": "300",
		}, "443"},
		{"the simulator", "minimal-values.yaml", []string{"networkPolicy.enabled=true"}, map[string]string{
			"GATEWAY_CONSOLE": "true", "GATEWAY_PROCESSOR_URL": "http://finance-processor-sim:8090",
			"GATEWAY_PROCESSOR_RATE_LIMIT": "300",
		}, "processor-sim"},
		{"as-is, own roles", "production-values.yaml", nil, map[string]string{
			"GATEWAY_CONSOLE": "true", "GATEWAY_PROCESSOR_RATE_LIMIT": "300",
			"GATEWAY_RECONCILE_DATABASE_URL": "secret:finance-database/DATABASE_URL_RECONCILER",
		}, ""},
		{"own roles, the reconciler's unset", "production-values.yaml", []string{"database.serviceUrlKeys.reconciler="}, map[string]string{
			"GATEWAY_CONSOLE": "true", "GATEWAY_PROCESSOR_RATE_LIMIT": "300",
			"GATEWAY_RECONCILE_DATABASE_URL": "secret:finance-database/DATABASE_URL",
		}, ""},
		{"explicit settings", "production-values.yaml", []string{
			"gateway.console.processorURL=https://lookup.example.com", "gateway.console.reconcileUrlKey=DATABASE_URL_RECONCILER",
			"gateway.console.reconcileExistingSecret=finance-reconciler", "processor.rateLimit=120",
		}, map[string]string{
			"GATEWAY_CONSOLE": "true", "GATEWAY_PROCESSOR_URL": "https://lookup.example.com",
			"GATEWAY_PROCESSOR_STATEMENT_URL": "https://processor.example.com/statement", "GATEWAY_PROCESSOR_RATE_LIMIT": "120",
			"GATEWAY_RECONCILE_DATABASE_URL": "secret:finance-reconciler/DATABASE_URL_RECONCILER",
		}, "443"},
		{"off", "production-values.yaml", []string{"gateway.console.enabled=false"}, map[string]string{
			"GATEWAY_CONSOLE": "false",
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			objs, err := render(t, helm, chart, []string{tc.file}, tc.sets...)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			processor := ""
			simAdmitsGateway := false
			for _, o := range objs {
				switch {
				case str(o, "kind") == "Deployment" && strings.HasSuffix(name(o), "-gateway"):
					for _, e := range list(list(m(o, "spec", "template", "spec"), "containers")[0].(obj), "env") {
						n := str(e.(obj), "name")
						if !strings.HasPrefix(n, "GATEWAY_CONSOLE") && !strings.HasPrefix(n, "GATEWAY_PROCESSOR_") && !strings.HasPrefix(n, "GATEWAY_RECONCILE_") {
							continue
						}
						if _, ok := e.(obj)["valueFrom"]; ok {
							ref := m(e.(obj), "valueFrom", "secretKeyRef")
							got[n] = "secret:" + str(ref, "name") + "/" + str(ref, "key")
						} else {
							got[n] = str(e.(obj), "value")
						}
					}
				case str(o, "kind") == "NetworkPolicy" && strings.HasSuffix(name(o), "-gateway"):
					for _, rule := range list(o, "spec", "egress") {
						for _, to := range list(rule.(obj), "to") {
							if str(to.(obj), "podSelector", "matchLabels", "app.kubernetes.io/component") == "processor-sim" {
								processor = "processor-sim"
							}
						}
						for _, port := range list(rule.(obj), "ports") {
							if fmt.Sprint(port.(obj)["port"]) == "443" {
								processor = "443"
							}
						}
					}
				case str(o, "kind") == "NetworkPolicy" && strings.HasSuffix(name(o), "-processor-sim"):
					for _, rule := range list(o, "spec", "ingress") {
						for _, from := range list(rule.(obj), "from") {
							simAdmitsGateway = simAdmitsGateway || str(from.(obj), "podSelector", "matchLabels", "app.kubernetes.io/component") == "gateway"
						}
					}
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("--set %v: the gateway's console settings\n got %v\nwant %v", tc.sets, got, tc.want)
			}
			if processor != tc.processor {
				t.Errorf("--set %v: the gateway's NetworkPolicy reaches the processor by %q, want %q", tc.sets, processor, tc.processor)
			}
			if want := tc.processor == "processor-sim"; simAdmitsGateway != want {
				t.Errorf("--set %v: the simulator's NetworkPolicy admits the gateway: %v, want %v", tc.sets, simAdmitsGateway, want)
			}
		})
	}
}

// Values that would break an invariant fail the render with a message
// that says which.
// The chart's PrometheusRule holds every alert: its four liveness alerts
// and every group of files/rules.yaml (the issue-17 alerts and the SLO's
// recording rules), the one rule file that deploy/observability checks
// with promtool's packages.
func TestAlertsHoldEveryRuleOfTheRuleFile(t *testing.T) {
	t.Parallel()
	helm, chart := setup(t)
	objs, err := render(t, helm, chart, []string{"production-values.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(chart, "files", "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var file obj
	if err := yaml.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}
	// ruleNames lists a group list's alerts and recorded series.
	ruleNames := func(groups []any) map[string]bool {
		names := map[string]bool{}
		for _, g := range groups {
			for _, r := range list(g.(map[string]any), "rules") {
				r := r.(map[string]any)
				names[str(r, "alert")+str(r, "record")] = true
			}
		}
		return names
	}
	want := ruleNames(list(file, "groups"))
	if len(want) < 6 {
		t.Fatalf("files/rules.yaml: %d rules, want its alerts and recording rules", len(want))
	}
	for _, n := range []string{"FinancePaymentStuck", "FinanceReconcilerDown", "FinancePaymentConflict", "FinanceOutcomesStalled"} {
		want[n] = true
	}
	var got map[string]bool
	for _, o := range objs {
		if str(o, "kind") == "PrometheusRule" {
			got = ruleNames(list(o, "spec", "groups"))
		}
	}
	for n := range want {
		if !got[n] {
			t.Errorf("the PrometheusRule lacks %s", n)
		}
	}
	if len(got) != len(want) {
		t.Errorf("the PrometheusRule holds %d rules, want %d", len(got), len(want))
	}
}

func TestChartRefusesBrokenValues(t *testing.T) {
	t.Parallel()
	helm, chart := setup(t)
	for _, tc := range []struct {
		name string
		sets []string
		want string
	}{
		{"more dispatchers than partitions", []string{"dispatcher.replicaCount=13"}, "dispatcher.replicaCount=13 exceeds kafka.partitions=12"},
		{"no processor", []string{"processor.url="}, "processor.url is required"},
		{"unknown SASL mechanism", []string{"kafka.sasl.enabled=true", "kafka.sasl.mechanism=GSSAPI", "kafka.sasl.existingSecret=k"}, `kafka.sasl.mechanism="GSSAPI"`},
		{"SASL without a Secret", []string{"kafka.sasl.enabled=true"}, "kafka.sasl.existingSecret is required"},
		{"no JWKS URL", []string{"auth.jwksURL="}, "auth.jwksURL is required"},
		{"no audience", []string{"auth.audience="}, "auth.audience is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := render(t, helm, chart, []string{"default-values.yaml"}, tc.sets...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("render = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	// At the bound it renders.
	if _, err := render(t, helm, chart, []string{"default-values.yaml"}, "dispatcher.replicaCount=12"); err != nil {
		t.Errorf("12 dispatchers on 12 partitions: %v", err)
	}
}

// selects reports whether selector's labels are all in labels.
func selects(selector, labels obj) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// m walks o by keys and returns the map there, or an empty one.
func m(o obj, keys ...string) obj {
	cur := o
	for _, k := range keys {
		next, ok := cur[k].(obj)
		if !ok {
			return obj{}
		}
		cur = next
	}
	return cur
}

func str(o obj, keys ...string) string {
	v, ok := m(o, keys[:len(keys)-1]...)[keys[len(keys)-1]]
	if !ok || v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

func num(o obj, keys ...string) int {
	n, _ := strconv.Atoi(str(o, keys...))
	return n
}

func list(o obj, keys ...string) []any {
	l, _ := m(o, keys[:len(keys)-1]...)[keys[len(keys)-1]].([]any)
	return l
}

func name(o obj) string { return str(o, "metadata", "name") }
