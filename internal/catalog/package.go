// Package catalog is Convoy's service catalog: packages (a Helm chart with the metadata of
// api/v1alpha1's Package) read from a directory or from the fleet registry, where `helm push`
// puts them as OCI artifacts; their plans and values; and the Helm program that packages,
// lints, renders, pushes and installs them at the hub. The CLI imports it.
package catalog

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// Package is one version of a package.
type Package struct {
	// Name, Version, AppVersion and Description are the chart's (Chart.yaml).
	Name, Version, AppVersion, Description string
	Meta                                   v1alpha1.Package
	// Schema is the chart's values.schema.json, if it has one.
	Schema []byte
}

// chartFile is the part of Chart.yaml the catalog reads.
type chartFile struct {
	APIVersion  string `json:"apiVersion"`
	Name        string `json:"name"`
	Version     string `json:"version"`
	AppVersion  string `json:"appVersion"`
	Description string `json:"description"`
	Type        string `json:"type"`
}

// Load reads the package in dir (a chart directory).
func Load(dir string) (*Package, error) {
	read := func(name string) ([]byte, error) { return os.ReadFile(filepath.Join(dir, name)) }
	return load(dir, read)
}

// LoadArchive reads a packaged chart (.tgz, as `helm package` makes it and the registry
// holds it).
func LoadArchive(tgz []byte) (*Package, error) {
	files, err := untar(tgz)
	if err != nil {
		return nil, err
	}
	read := func(name string) ([]byte, error) {
		b, ok := files[name]
		if !ok {
			return nil, fmt.Errorf("%s: %w", name, os.ErrNotExist)
		}
		return b, nil
	}
	return load("the chart archive", read)
}

func load(where string, read func(string) ([]byte, error)) (*Package, error) {
	raw, err := read("Chart.yaml")
	if err != nil {
		return nil, fmt.Errorf("%s is not a Helm chart (no Chart.yaml): %w", where, err)
	}
	var cf chartFile
	if err := yaml.Unmarshal(raw, &cf); err != nil {
		return nil, fmt.Errorf("%s/Chart.yaml: %w", where, err)
	}
	p := &Package{Name: cf.Name, Version: cf.Version, AppVersion: cf.AppVersion, Description: cf.Description}
	raw, err = read(v1alpha1.PackageFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s is a Helm chart but not a Convoy package: it has no %s (convoy package init writes one)", where, v1alpha1.PackageFile)
	} else if err != nil {
		return nil, err
	}
	if err := yaml.UnmarshalStrict(raw, &p.Meta); err != nil {
		return nil, fmt.Errorf("%s/%s: %w", where, v1alpha1.PackageFile, err)
	}
	if p.Schema, err = read("values.schema.json"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if errs := p.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("%s/%s: %s", where, v1alpha1.PackageFile, strings.Join(errs, "; "))
	}
	return p, nil
}

var (
	nameRE   = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$`)
	semverRE = regexp.MustCompile(`^v?\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)
	keyRE    = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)
	// goVersionRE is a module version as the module proxy names one: v, then semver.
	goVersionRE = regexp.MustCompile(`^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+incompatible)?$`)
)

// Validate lists what is wrong with the package's metadata, each saying what to do.
func (p *Package) Validate() []string {
	var errs []string
	add := func(f string, a ...any) { errs = append(errs, fmt.Sprintf(f, a...)) }
	m := p.Meta
	if !nameRE.MatchString(p.Name) {
		add("name %q (Chart.yaml): use lower-case letters, digits and '-', at most 40, starting with a letter", p.Name)
	}
	if !semverRE.MatchString(p.Version) {
		add("version %q (Chart.yaml): use a semantic version such as 1.0.0", p.Version)
	}
	if m.APIVersion != v1alpha1.PackageAPIVersion || m.Kind != v1alpha1.PackageKind {
		add("apiVersion and kind must be %s and %s", v1alpha1.PackageAPIVersion, v1alpha1.PackageKind)
	}
	if !slices.Contains(v1alpha1.PackageCategories, m.Category) {
		add("category %q: use one of %s", m.Category, strings.Join(v1alpha1.PackageCategories, ", "))
	}
	if strings.TrimSpace(p.Description) == "" {
		add("description (Chart.yaml) is empty: say in one line what the service is")
	}
	if m.Type == "" && len(m.Outputs) > 0 {
		add("outputs without a type: give the Service Binding type of the connection Secret (postgresql, redis, ...)")
	}
	if m.Type != "" && !nameRE.MatchString(m.Type) {
		add("type %q: use lower-case letters, digits and '-'", m.Type)
	}
	seen := map[string]bool{}
	for _, o := range m.Outputs {
		switch {
		case !keyRE.MatchString(o):
			add("output %q is not a valid Secret key", o)
		case o == "type" || o == "provider":
			add("output %q is always in the connection Secret; leave it out of outputs", o)
		case seen[o]:
			add("output %q is listed twice", o)
		}
		seen[o] = true
	}
	if len(m.Plans) == 0 {
		add("no plans: a package has at least one (the first is the default)")
	}
	plans := map[string]bool{}
	for i, pl := range m.Plans {
		if !nameRE.MatchString(pl.Name) {
			add("plans[%d].name %q: use lower-case letters, digits and '-'", i, pl.Name)
		}
		if plans[pl.Name] {
			add("plan %q is listed twice", pl.Name)
		}
		plans[pl.Name] = true
		if len(pl.Values) > 0 {
			var v map[string]any
			if err := json.Unmarshal(pl.Values, &v); err != nil {
				add("plan %q: values must be a map: %v", pl.Name, err)
			} else if _, ok := v[v1alpha1.PlanValue]; ok {
				add("plan %q: values may not set %q", pl.Name, v1alpha1.PlanValue)
			}
		}
	}
	for i, img := range m.Images {
		if !strings.HasPrefix(img.Name, "registry.convoy.local/") || !strings.Contains(path.Base(img.Name), ":") {
			add("images[%d].name %q: name it registry.convoy.local/REPO:TAG (nodes pull only from the fleet registry)", i, img.Name)
		}
		if strings.HasPrefix(img.Name, "registry.convoy.local/"+v1alpha1.CatalogRepository+"/") {
			add("images[%d].name %q: %s/ holds the packages' charts; put images elsewhere, for example registry.convoy.local/services/%s", i, img.Name, v1alpha1.CatalogRepository, path.Base(img.Name))
		}
		switch g := img.Go; {
		case img.Debian != nil && g != nil:
			add("images[%d] (%s): it has both debian and go; keep the one it is made of", i, img.Name)
		case g != nil:
			if g.Module == "" {
				add("images[%d] (%s): go.module is empty: give the Go module's path (github.com/OWNER/REPO)", i, img.Name)
			}
			if !goVersionRE.MatchString(g.Version) {
				add("images[%d] (%s): go.version %q: give the module's exact version, such as v1.2.3 (not latest or a branch), so that the image is the same whenever it is made", i, img.Name, g.Version)
			}
			if g.Package != "" && g.Package != g.Module && !strings.HasPrefix(g.Package, g.Module+"/") {
				add("images[%d] (%s): go.package %q is not in the module %s: give the import path of its main package (%s/cmd/NAME)", i, img.Name, g.Package, g.Module, g.Module)
			}
		case img.Debian == nil || len(img.Debian.Packages) == 0:
			add("images[%d] (%s): say what it is made of: Debian packages (debian.packages) or a Go module (go.module and go.version)", i, img.Name)
		}
	}
	return errs
}

// JobTemplate says whether the package is a batch job template rather than a service: it has
// no type, so no connection Secret, and its chart runs a Job that is Available once Complete.
func (p *Package) JobTemplate() bool { return p.Meta.Type == "" }

// Plan finds a plan by name ("" is the default, the first).
func (p *Package) Plan(name string) (v1alpha1.PackagePlan, error) {
	if name == "" {
		return p.Meta.Plans[0], nil
	}
	var names []string
	for _, pl := range p.Meta.Plans {
		if pl.Name == name {
			return pl, nil
		}
		names = append(names, pl.Name)
	}
	return v1alpha1.PackagePlan{}, fmt.Errorf("package %s has no plan %q; its plans are %s", p.Name, name, strings.Join(names, ", "))
}

// untar reads the files of a chart archive, by their path below the chart's own directory.
func untar(tgz []byte) (map[string][]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		return nil, fmt.Errorf("read chart archive: %w", err)
	}
	tr := tar.NewReader(zr)
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read chart archive: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		_, rest, ok := strings.Cut(h.Name, "/") // CHART/templates/x.yaml -> templates/x.yaml
		if !ok || h.Size > 4<<20 {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		files[rest] = b
	}
}
