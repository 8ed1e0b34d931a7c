package catalog_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/convoy-dev/convoy/internal/catalog"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/registry"
)

// copyPackage copies the repository's redis package into a temporary directory, with edits:
// file -> (old -> new).
func copyPackage(t *testing.T, edits map[string][2]string) string {
	t.Helper()
	return copyPackageOf(t, "redis", edits)
}

// copyPackageOf copies the repository's package name, with edits.
func copyPackageOf(t *testing.T, name string, edits map[string][2]string) string {
	t.Helper()
	src := filepath.Join(hubtest.RepoRoot(t), "catalog", name)
	dst := filepath.Join(t.TempDir(), name)
	hubtest.Must(t, os.CopyFS(dst, os.DirFS(src)))
	for file, e := range edits {
		p := filepath.Join(dst, file)
		raw, err := os.ReadFile(p)
		hubtest.Must(t, err)
		if !strings.Contains(string(raw), e[0]) {
			t.Fatalf("%s has no %q to edit", file, e[0])
		}
		hubtest.Must(t, os.WriteFile(p, []byte(strings.Replace(string(raw), e[0], e[1], 1)), 0o644))
	}
	return dst
}

func TestLoadAndValidate(t *testing.T) {
	t.Parallel()
	p, err := catalog.Load(filepath.Join(hubtest.RepoRoot(t), "catalog", "redis"))
	hubtest.Must(t, err)
	if p.Name != "redis" || p.Meta.Category != "cache" || p.Meta.Plans[0].Name != "standard" || len(p.Meta.Images) != 1 {
		t.Errorf("catalog/redis read as %+v", p)
	}
	if _, err := p.Plan("cache"); err != nil {
		t.Error(err)
	}
	if _, err := p.Plan("huge"); err == nil || !strings.Contains(err.Error(), "its plans are standard, cache") {
		t.Errorf("an unknown plan: %v", err)
	}
	for _, tc := range []struct {
		file, old, new, want string
	}{
		{"convoy-package.yaml", "category: cache", "category: caches", `category "caches": use one of`},
		{"convoy-package.yaml", "outputs: [host,", "outputs: [type, host,", `output "type" is always in the connection Secret`},
		{"convoy-package.yaml", "- name: cache\n", "- name: standard\n", `plan "standard" is listed twice`},
		{"convoy-package.yaml", "registry.convoy.local/services/redis", "registry.convoy.local/catalog/redis", "holds the packages' charts"},
		{"convoy-package.yaml", "registry.convoy.local/services/redis", "docker.io/redis", "name it registry.convoy.local/REPO:TAG"},
		{"convoy-package.yaml", "kind: Package", "kind: Chart", "apiVersion and kind must be"},
		{"convoy-package.yaml", "category: cache", "category: cache\ncolour: red", `unknown field "colour"`},
		{"Chart.yaml", "version: 7.0.15", "version: seven", `version "seven"`},
		{"Chart.yaml", "name: redis", "name: Redis_7", `name "Redis_7"`},
	} {
		_, err := catalog.Load(copyPackage(t, map[string][2]string{tc.file: {tc.old, tc.new}}))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s with %q: got %v, want an error with %q", tc.file, tc.new, err, tc.want)
		}
	}
	// A package without type is a batch job template: no connection Secret, so no outputs.
	job, err := catalog.Load(filepath.Join(hubtest.RepoRoot(t), "catalog", "pytorch"))
	hubtest.Must(t, err)
	if !job.JobTemplate() || p.JobTemplate() || len(job.Meta.Outputs) != 0 {
		t.Errorf("catalog/pytorch is a job template: %v, catalog/redis: %v", job.JobTemplate(), p.JobTemplate())
	}
	if _, err := catalog.Load(copyPackageOf(t, "pytorch", map[string][2]string{"convoy-package.yaml": {"plans:", "outputs: [uri]\nplans:"}})); err == nil || !strings.Contains(err.Error(), "outputs without a type") {
		t.Errorf("a job template with outputs: %v", err)
	}
	// Images of Go modules: exactly one source, an exact version, a package of the module.
	for _, tc := range []struct{ old, new, want string }{
		{"version: v1.24.2\n", "version: latest\n", `go.version "latest": give the module's exact version`},
		{"package: github.com/FerretDB/FerretDB/cmd/ferretdb", "package: github.com/other/thing", "is not in the module github.com/FerretDB/FerretDB"},
		{"module: github.com/FerretDB/FerretDB\n", "module: \"\"\n", "go.module is empty"},
		{"  go:\n", "  debian: {packages: [curl]}\n  go:\n", "it has both debian and go"},
	} {
		_, err := catalog.Load(copyPackageOf(t, "ferretdb", map[string][2]string{"convoy-package.yaml": {tc.old, tc.new}}))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ferretdb with %q: got %v, want an error with %q", tc.new, err, tc.want)
		}
	}
	dir := copyPackage(t, nil)
	hubtest.Must(t, os.Remove(filepath.Join(dir, "convoy-package.yaml")))
	if _, err := catalog.Load(dir); err == nil || !strings.Contains(err.Error(), "not a Convoy package") {
		t.Errorf("a chart without metadata: %v", err)
	}
}

func TestLint(t *testing.T) {
	t.Parallel()
	helm := catalog.Helm{Bin: filepath.Join(hubtest.BinDir(t), "helm")}
	ctx := context.Background()
	// Every package of the repository's catalog (make up pushes them all).
	dirs, err := os.ReadDir(filepath.Join(hubtest.RepoRoot(t), "catalog"))
	hubtest.Must(t, err)
	for _, d := range dirs {
		if _, err := catalog.Lint(ctx, helm, filepath.Join(hubtest.RepoRoot(t), "catalog", d.Name())); err != nil {
			t.Errorf("catalog/%s: %v", d.Name(), err)
		}
	}
	for _, tc := range []struct {
		file, old, new, want string
	}{
		{"templates/secret.yaml", "name: {{ $name }}", "name: {{ $name }}-x", `renders no connection Secret "lint-check-release-name-30chrs-binding"`},
		{"templates/statefulset.yaml", "name: {{ .Release.Name }}-redis\n", "name: {{ .Release.Name }}-redis-a-long-suffix-here\n", "is 55 characters long with a release name of 30"},
		{"templates/secret.yaml", "  uri: ", "  url: ", "lacks uri"},
		{"templates/secret.yaml", "type: servicebinding.io/redis", "type: Opaque", `has type "Opaque"`},
		// A plan whose values the chart's schema refuses.
		{"convoy-package.yaml", "maxMemory: 64mb", "maxMemory: lots", "plan cache"},
		{"templates/service.yaml", "kind: Service", "kind: Service\n  {{ .Values.nothing.here }}", "plan standard"},
	} {
		_, err := catalog.Lint(ctx, helm, copyPackage(t, map[string][2]string{tc.file: {tc.old, tc.new}}))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s with %q: got %v, want an error with %q", tc.file, tc.new, err, tc.want)
		}
	}
	// A package without type is a job template: its plans render a Job and no connection Secret.
	for _, tc := range []struct {
		pkg, file, old, new, want string
	}{
		{"pytorch", "templates/job.yaml", "kind: Job", "kind: ConfigMap", "renders no batch/v1 Job"},
		{"pytorch", "templates/job.yaml", "apiVersion: batch/v1", "apiVersion: batch/v1beta1", "renders no batch/v1 Job"},
		{"pytorch", "convoy-package.yaml", "  values: {epochs: 300,", "  values: {epochs: 0,", "plan small"},
		{"redis", "convoy-package.yaml", "type: redis\noutputs: [host, port, password, uri]\n", "", "renders a connection Secret lint-check-release-name-30chrs-binding, but convoy-package.yaml gives no type"},
	} {
		_, err := catalog.Lint(ctx, helm, copyPackageOf(t, tc.pkg, map[string][2]string{tc.file: {tc.old, tc.new}}))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %s with %q: got %v, want an error with %q", tc.pkg, tc.file, tc.new, err, tc.want)
		}
	}
}

// TestRegistry pushes two versions of a package with the real helm to a real fleet registry
// and reads the catalog back.
func TestRegistry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := registry.Start(ctx, t.TempDir(), "127.0.0.1:0", hubtest.Logger(t))
	hubtest.Must(t, err)
	t.Cleanup(func() { s.Close(context.Background()) })
	helm := catalog.Helm{Bin: filepath.Join(hubtest.BinDir(t), "helm")}
	if _, err := catalog.List(ctx, s.Addr()); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"7.0.9", "7.0.15", "7.0.10"} {
		dir := copyPackage(t, map[string][2]string{"Chart.yaml": {"version: 7.0.15", "version: " + v}})
		tgz, err := helm.Archive(ctx, dir, t.TempDir())
		hubtest.Must(t, err)
		hubtest.Must(t, helm.PushChart(ctx, tgz, s.Addr()))
	}
	entries, err := catalog.List(ctx, s.Addr())
	hubtest.Must(t, err)
	if len(entries) != 1 || entries[0].Name != "redis" || entries[0].Version != "7.0.15" ||
		!slices.Equal(entries[0].Versions, []string{"7.0.15", "7.0.10", "7.0.9"}) {
		t.Fatalf("catalog: %+v", entries)
	}
	p, tgz, err := catalog.Fetch(ctx, s.Addr(), "redis", "7.0.9")
	hubtest.Must(t, err)
	if p.Version != "7.0.9" || len(tgz) == 0 {
		t.Errorf("fetched %s %s", p.Name, p.Version)
	}
	if _, _, err := catalog.Fetch(ctx, s.Addr(), "redis", "8.0.0"); err == nil || !strings.Contains(err.Error(), "no version 8.0.0 (it has 7.0.15, 7.0.10, 7.0.9)") {
		t.Errorf("an unknown version: %v", err)
	}
	if _, _, err := catalog.Fetch(ctx, s.Addr(), "postgres", ""); err == nil || !strings.Contains(err.Error(), `"postgres": not in the catalog`) {
		t.Errorf("an unknown package: %v", err)
	}
	// Helm pulls it from the registry too.
	out := t.TempDir()
	if _, err := helm.Run(ctx, "pull", "oci://"+s.Addr()+"/catalog/redis", "--version", "7.0.10", "--plain-http", "-d", out); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, "redis-7.0.10.tgz")); err != nil {
		t.Error(err)
	}
}
