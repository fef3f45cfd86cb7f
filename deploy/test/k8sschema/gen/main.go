// Command gen writes the Kubernetes OpenAPI schemas the chart's test
// validates against (k8sschema/kubernetes-<version>.json) from the
// k8s.io/kubernetes module's api/openapi-spec/v3, fetched through the Go
// module proxy:
//
//	cd deploy/test && go run ./k8sschema/gen -version v1.36.3
//
// It keeps only the kinds the chart renders and the schemas they reach,
// without descriptions and defaults, and closes every object that lists its
// properties (additionalProperties: false), as `kubectl apply
// --validate=strict` and kubeconform -strict do, so that a misspelt field
// fails.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// groups are the spec files (api/openapi-spec/v3/<name>_openapi.json) that
// hold the kinds below.
var groups = []string{
	"api__v1", "apis__apps__v1", "apis__batch__v1", "apis__policy__v1",
	"apis__autoscaling__v2", "apis__networking.k8s.io__v1",
}

// Kinds maps apiVersion/kind to the schema name, for every kind the chart
// may render.
var kinds = map[string]string{
	"v1/Service":                             "io.k8s.api.core.v1.Service",
	"v1/ConfigMap":                           "io.k8s.api.core.v1.ConfigMap",
	"v1/Secret":                              "io.k8s.api.core.v1.Secret",
	"v1/ServiceAccount":                      "io.k8s.api.core.v1.ServiceAccount",
	"apps/v1/Deployment":                     "io.k8s.api.apps.v1.Deployment",
	"apps/v1/StatefulSet":                    "io.k8s.api.apps.v1.StatefulSet",
	"batch/v1/Job":                           "io.k8s.api.batch.v1.Job",
	"batch/v1/CronJob":                       "io.k8s.api.batch.v1.CronJob",
	"policy/v1/PodDisruptionBudget":          "io.k8s.api.policy.v1.PodDisruptionBudget",
	"autoscaling/v2/HorizontalPodAutoscaler": "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler",
	"networking.k8s.io/v1/NetworkPolicy":     "io.k8s.api.networking.v1.NetworkPolicy",
	"networking.k8s.io/v1/Ingress":           "io.k8s.api.networking.v1.Ingress",
}

func main() {
	version := flag.String("version", "v1.36.3", "the k8s.io/kubernetes module version (a Kubernetes release)")
	out := flag.String("out", "", "output file (default: k8sschema/kubernetes-<version>.json, run from deploy/test)")
	flag.Parse()
	if err := run(*version, *out); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(version, out string) error {
	dir, err := moduleDir("k8s.io/kubernetes@" + version)
	if err != nil {
		return err
	}
	all := map[string]any{}
	for _, g := range groups {
		b, err := os.ReadFile(filepath.Join(dir, "api", "openapi-spec", "v3", g+"_openapi.json"))
		if err != nil {
			return err
		}
		var doc struct {
			Components struct {
				Schemas map[string]any `json:"schemas"`
			} `json:"components"`
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			return fmt.Errorf("%s: %w", g, err)
		}
		for k, v := range doc.Components.Schemas {
			all[k] = v
		}
	}
	keep := map[string]any{}
	var visit func(name string) error
	visit = func(name string) error {
		if _, ok := keep[name]; ok {
			return nil
		}
		s, ok := all[name]
		if !ok {
			return fmt.Errorf("schema %s not found", name)
		}
		trimmed := trim(s)
		keep[name] = trimmed
		for _, ref := range refs(trimmed) {
			if err := visit(ref); err != nil {
				return err
			}
		}
		return nil
	}
	names := make([]string, 0, len(kinds))
	for k, name := range kinds {
		names = append(names, k)
		if err := visit(name); err != nil {
			return err
		}
	}
	sort.Strings(names)
	doc := map[string]any{
		"source": fmt.Sprintf("k8s.io/kubernetes@%s api/openapi-spec/v3 (%s), trimmed by deploy/test/k8sschema/gen", version, strings.Join(groups, ", ")),
		"kinds":  kinds,
		"components": map[string]any{
			"schemas": keep,
		},
	}
	b, err := json.MarshalIndent(doc, "", " ")
	if err != nil {
		return err
	}
	if out == "" {
		out = filepath.Join("k8sschema", "kubernetes-"+version+".json")
	}
	if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Printf("wrote %s: %d schemas for %d kinds\n", out, len(keep), len(names))
	return nil
}

// moduleDir downloads mod through the module proxy (or finds it in the
// module cache) and returns its directory.
func moduleDir(mod string) (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", mod)
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download %s: %v\n%s%s", mod, err, b, stderr.String())
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(b, &info); err != nil {
		return "", err
	}
	if info.Error != "" {
		return "", fmt.Errorf("go mod download %s: %s", mod, info.Error)
	}
	return info.Dir, nil
}

// trim drops what validation does not use (descriptions, defaults,
// patch-strategy and list-map annotations) and closes objects that list
// their properties.
func trim(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, x := range v {
			switch {
			case k == "description" || k == "default" || k == "example":
				continue
			case strings.HasPrefix(k, "x-kubernetes-") && k != "x-kubernetes-preserve-unknown-fields":
				continue
			case k == "properties":
				props := map[string]any{}
				for name, p := range x.(map[string]any) {
					props[name] = trim(p)
				}
				out[k] = props
			default:
				out[k] = trim(x)
			}
		}
		if _, ok := out["properties"]; ok {
			if _, ok := out["additionalProperties"]; !ok && out["x-kubernetes-preserve-unknown-fields"] != true {
				out["additionalProperties"] = false
			}
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = trim(x)
		}
		return out
	}
	return v
}

// refs returns the schema names v refers to.
func refs(v any) []string {
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && k == "$ref" {
					out = append(out, strings.TrimPrefix(s, "#/components/schemas/"))
					continue
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(v)
	return out
}
