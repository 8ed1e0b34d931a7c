package catalog

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/util/yaml"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// Lint checks the package in dir: its metadata (Load), Helm's lint with every plan's values,
// and that every plan renders the connection Secret the metadata promises, of the right type
// and with every output (a job template's plans render a Job instead).
func Lint(ctx context.Context, h Helm, dir string) (*Package, error) {
	p, err := Load(dir)
	if err != nil {
		return nil, err
	}
	h.Kubeconfig = "" // nothing here talks to a cluster
	tmp, err := os.MkdirTemp("", "convoy-lint-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	for _, pl := range p.Meta.Plans {
		vals := filepath.Join(tmp, pl.Name+".json")
		raw := pl.Values
		if len(raw) == 0 {
			raw = []byte("{}")
		}
		if err := os.WriteFile(vals, raw, 0o600); err != nil {
			return nil, err
		}
		if out, err := h.Run(ctx, "lint", dir, "--quiet", "-f", vals); err != nil {
			return nil, fmt.Errorf("plan %s: %w%s", pl.Name, err, indent(out))
		}
		// The longest release name `convoy catalog install` takes, so that names made of it
		// are checked at their longest.
		out, err := h.Run(ctx, "template", lintRelease, dir, "-n", "lint", "-f", vals)
		if err != nil {
			return nil, fmt.Errorf("plan %s does not render: %w", pl.Name, err)
		}
		if err := checkBinding(p, out); err != nil {
			return nil, fmt.Errorf("plan %s: %w", pl.Name, err)
		}
		if err := checkNames(out); err != nil {
			return nil, fmt.Errorf("plan %s: %w", pl.Name, err)
		}
	}
	return p, nil
}

// MaxServiceName is the longest name of a catalog service (its release and Placement).
const MaxServiceName = 30

// lintRelease is the release name lint renders with: MaxServiceName long.
const lintRelease = "lint-check-release-name-30chrs"

// nameLimits are the longest names Kubernetes takes for kinds whose names are made into others:
// a StatefulSet's into its pods' controller-revision-hash label, a CronJob's into its Jobs'.
var nameLimits = map[string]int{"StatefulSet": 52, "CronJob": 52, "Service": 63}

// checkNames finds names too long for their kind when the release name is at its longest.
func checkNames(rendered []byte) error {
	d := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(rendered), 4096)
	for {
		var obj struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := d.Decode(&obj); err != nil {
			return nil
		}
		limit, ok := nameLimits[obj.Kind]
		if !ok {
			limit = 253
		}
		if len(obj.Metadata.Name) > limit {
			return fmt.Errorf("%s %s is %d characters long with a release name of %d; Kubernetes takes at most %d: make the name shorter",
				obj.Kind, obj.Metadata.Name, len(obj.Metadata.Name), MaxServiceName, limit)
		}
	}
}

// checkBinding finds the connection Secret in rendered manifests; in a job template's (a
// package without type), a Job and no connection Secret.
func checkBinding(p *Package, rendered []byte) error {
	want := v1alpha1.BindingSecretName(lintRelease)
	d := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(rendered), 4096)
	job := false
	for {
		var obj struct {
			APIVersion string                `json:"apiVersion"`
			Kind       string                `json:"kind"`
			Type       string                `json:"type"`
			Metadata   struct{ Name string } `json:"metadata"`
			Data       map[string]string     `json:"data"`
			StringData map[string]string     `json:"stringData"`
		}
		if err := d.Decode(&obj); err != nil {
			break
		}
		if p.JobTemplate() {
			job = job || (obj.APIVersion == "batch/v1" && obj.Kind == "Job")
			if obj.Kind == "Secret" && obj.Metadata.Name == want {
				return fmt.Errorf("the chart renders a connection Secret %s, but %s gives no type: give the Service Binding type and outputs", want, v1alpha1.PackageFile)
			}
			continue
		}
		if obj.Kind != "Secret" || obj.Metadata.Name != want {
			continue
		}
		if obj.Type != "servicebinding.io/"+p.Meta.Type {
			return fmt.Errorf("the connection Secret %s has type %q; make it servicebinding.io/%s", want, obj.Type, p.Meta.Type)
		}
		var missing []string
		for _, k := range append([]string{"type", "provider"}, p.Meta.Outputs...) {
			_, a := obj.Data[k]
			_, b := obj.StringData[k]
			if !a && !b {
				missing = append(missing, k)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("the connection Secret %s lacks %s", want, strings.Join(missing, ", "))
		}
		return nil
	}
	if p.JobTemplate() {
		if !job {
			return fmt.Errorf("%s gives no type, so the package is a batch job template, but the chart renders no batch/v1 Job: render one, or give the type and outputs of a service's connection Secret", v1alpha1.PackageFile)
		}
		return nil
	}
	return fmt.Errorf("the chart renders no connection Secret %q (name it {{ .Release.Name }}-binding) though %s gives type %s", want, v1alpha1.PackageFile, p.Meta.Type)
}

func indent(b []byte) string {
	s := strings.TrimSpace(string(b))
	if s == "" {
		return ""
	}
	return "\n  " + strings.ReplaceAll(s, "\n", "\n  ")
}
