// Package k8sschema validates Kubernetes objects against the OpenAPI
// schemas of one Kubernetes release, vendored in this folder
// (kubernetes-<version>.json, written by ./gen from the k8s.io/kubernetes
// module's api/openapi-spec/v3). Objects are checked strictly: a field the
// schema does not know fails, as with kubectl's --validate=strict.
package k8sschema

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Version is the Kubernetes release of the vendored schemas.
const Version = "v1.36.3"

//go:embed kubernetes-v1.36.3.json
var specJSON []byte

const specURL = "file:///kubernetes.json"

// Validator checks objects of the kinds the vendored file covers.
type Validator struct {
	kinds   map[string]string
	mu      sync.Mutex
	schemas map[string]*jsonschema.Schema
	c       *jsonschema.Compiler
}

// New loads the vendored schemas.
func New() (*Validator, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(specJSON))
	if err != nil {
		return nil, fmt.Errorf("vendored schemas: %w", err)
	}
	var head struct {
		Kinds map[string]string `json:"kinds"`
	}
	if err := json.Unmarshal(specJSON, &head); err != nil {
		return nil, fmt.Errorf("vendored schemas: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource(specURL, doc); err != nil {
		return nil, err
	}
	return &Validator{kinds: head.Kinds, schemas: map[string]*jsonschema.Schema{}, c: c}, nil
}

// Knows reports whether the vendored schemas cover apiVersion/kind.
func (v *Validator) Knows(apiVersion, kind string) bool {
	_, ok := v.kinds[apiVersion+"/"+kind]
	return ok
}

// Validate checks one object, given as JSON.
func (v *Validator) Validate(objJSON []byte) error {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := json.Unmarshal(objJSON, &head); err != nil {
		return err
	}
	name, ok := v.kinds[head.APIVersion+"/"+head.Kind]
	if !ok {
		return fmt.Errorf("%s/%s: no vendored schema (Kubernetes %s)", head.APIVersion, head.Kind, Version)
	}
	sch, err := v.schema(name)
	if err != nil {
		return err
	}
	obj, err := jsonschema.UnmarshalJSON(bytes.NewReader(objJSON))
	if err != nil {
		return err
	}
	return sch.Validate(obj)
}

func (v *Validator) schema(name string) (*jsonschema.Schema, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if s, ok := v.schemas[name]; ok {
		return s, nil
	}
	s, err := v.c.Compile(specURL + "#/components/schemas/" + name)
	if err != nil {
		return nil, fmt.Errorf("compile %s: %w", name, err)
	}
	v.schemas[name] = s
	return s, nil
}
