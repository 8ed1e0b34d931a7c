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
)

// TestScaffold lints what convoy package init writes, as written, with the real helm.
func TestScaffold(t *testing.T) {
	t.Parallel()
	helm := catalog.Helm{Bin: filepath.Join(hubtest.BinDir(t), "helm")}
	ctx := context.Background()
	for _, tc := range []struct {
		name       string
		o          catalog.ScaffoldOptions
		typ, image string
		port       string
		todo       bool
	}{
		{"demo-cache", catalog.ScaffoldOptions{}, "memcached", "registry.convoy.local/services/demo-cache:1.0.0", "11211", false},
		{"kv", catalog.ScaffoldOptions{Debian: "redis-server", Port: 6379, Type: "redis", Category: "cache"},
			"redis", "registry.convoy.local/services/kv:1.0.0", "6379", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), tc.name)
			files, err := catalog.Scaffold(dir, tc.o)
			hubtest.Must(t, err)
			for _, f := range []string{"Chart.yaml", "convoy-package.yaml", "values.yaml", "values.schema.json", ".helmignore", "README.md",
				"templates/statefulset.yaml", "templates/service.yaml", "templates/secret.yaml", "templates/tests/connect.yaml"} {
				if !slices.Contains(files, filepath.Join(dir, f)) {
					t.Errorf("%s not written (wrote %v)", f, files)
				}
			}
			p, err := catalog.Load(dir)
			hubtest.Must(t, err)
			if p.Name != tc.name || p.Version != "0.1.0" || p.Meta.Type != tc.typ || p.Meta.Category != "cache" ||
				!slices.Equal(p.Meta.Outputs, []string{"host", "port", "password"}) || len(p.Meta.Images) != 1 || p.Meta.Images[0].Name != tc.image {
				t.Errorf("read as %+v", p)
			}
			if _, err := catalog.Lint(ctx, helm, dir); err != nil {
				t.Fatal(err)
			}
			// Every plan renders; the instance label is on every object and the claim template.
			out, err := helm.Run(ctx, "template", "rel", dir, "-n", "ns")
			hubtest.Must(t, err)
			s := string(out)
			for _, want := range []string{
				"name: rel-" + tc.name + "\n", "type: servicebinding.io/" + tc.typ, "host: rel-" + tc.name + ".ns.svc.cluster.local",
				`port: "` + tc.port + `"`, "volumeClaimTemplates:", "helm.sh/hook: test", "tcpSocket:",
			} {
				if !strings.Contains(s, want) {
					t.Errorf("the render has no %q:\n%s", want, s)
				}
			}
			if n, k := strings.Count(s, "app.kubernetes.io/instance: rel}"), strings.Count(s, "\nkind: "); n != k+4 {
				// each object once, plus the two selectors, the pod template and the claim template
				t.Errorf("%d instance labels for %d objects:\n%s", n, k, s)
			}
			out, err = helm.Run(ctx, "template", "rel", dir, "--set", "persistence.enabled=false")
			hubtest.Must(t, err)
			if strings.Contains(string(out), "volumeClaimTemplates") || !strings.Contains(string(out), "emptyDir") {
				t.Errorf("without persistence:\n%s", out)
			}
			if _, err := helm.Run(ctx, "template", "rel", dir, "--set", "colour=red"); err == nil {
				t.Error("the schema takes an unknown value")
			}
			all := ""
			for _, f := range files {
				raw, err := os.ReadFile(f)
				hubtest.Must(t, err)
				all += string(raw)
			}
			if got := strings.Contains(all, "TODO(packager)"); got != tc.todo {
				t.Errorf("TODO(packager) in the files: %v, want %v", got, tc.todo)
			}
			if strings.Contains(all, "TODO(packager): the category") {
				t.Error("a TODO for the category, which was given or is memcached's")
			}
		})
	}
}

func TestScaffoldRefuses(t *testing.T) {
	t.Parallel()
	full := t.TempDir()
	hubtest.Must(t, os.WriteFile(filepath.Join(full, "notes.txt"), []byte("mine"), 0o644))
	if _, err := catalog.Scaffold(full, catalog.ScaffoldOptions{Name: "cache"}); err == nil || !strings.Contains(err.Error(), "exists and is not empty: give a new directory") {
		t.Errorf("a directory with files: %v", err)
	}
	if raw, err := os.ReadFile(filepath.Join(full, "notes.txt")); err != nil || string(raw) != "mine" {
		t.Errorf("the directory's file was touched: %q, %v", raw, err)
	}
	// An empty directory is fine.
	if _, err := catalog.Scaffold(t.TempDir(), catalog.ScaffoldOptions{Name: "cache"}); err != nil {
		t.Errorf("an empty directory: %v", err)
	}
	for _, tc := range []struct {
		o    catalog.ScaffoldOptions
		want string
	}{
		{catalog.ScaffoldOptions{Name: "My_Cache"}, `package name "My_Cache": use lower-case letters`},
		{catalog.ScaffoldOptions{Name: "cache-"}, `package name "cache-"`},
		{catalog.ScaffoldOptions{Name: "cache", Debian: "postgresql"}, "give the TCP port postgresql listens on (--port)"},
		{catalog.ScaffoldOptions{Name: "cache", Port: 70000}, "port 70000"},
		{catalog.ScaffoldOptions{Name: "cache", Category: "caches"}, `category "caches": use one of`},
		{catalog.ScaffoldOptions{Name: "cache", Type: "Redis"}, `type "Redis"`},
		{catalog.ScaffoldOptions{Name: "cache", AppVersion: "1.0/x"}, `app version "1.0/x"`},
	} {
		dir := filepath.Join(t.TempDir(), "new")
		if _, err := catalog.Scaffold(dir, tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want an error with %q", tc.o, err, tc.want)
		}
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("%+v: %s made though refused", tc.o, dir)
		}
	}
}
