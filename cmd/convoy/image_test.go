package main_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/image"
	"github.com/convoy-dev/convoy/internal/registry"
)

// TestImageCommands pushes an archive through stdin, builds a Go package into an image, lists
// both, and is refused a file that is not an image archive, with nothing of it in the registry.
func TestImageCommands(t *testing.T) {
	t.Parallel()
	reg, err := registry.Start(context.Background(), t.TempDir(), "127.0.0.1:0", hubtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close(context.Background()) })
	flag := "--registry=" + reg.Addr()
	dir := t.TempDir()

	// A docker-archive on stdin, as `docker save nginx:1.27 | convoy image push -` gives it.
	img, err := image.FromBinary(filepath.Join(hubtest.BinDir(t), "convoy-pause"), image.Build{})
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "pause.tar")
	if err := image.WriteArchive(img, "nginx:1.27", archive); err != nil {
		t.Fatal(err)
	}
	push := exec.Command(convoyBin, "image", "push", "-", flag)
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	push.Stdin = f
	if out, err := push.CombinedOutput(); err != nil || !strings.Contains(string(out), "pushed nginx:1.27") {
		t.Fatalf("image push -: %v\n%s", err, out)
	}

	// A Go main package, built statically.
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	src := filepath.Join(dir, "hello")
	must(os.MkdirAll(src, 0o755))
	must(os.WriteFile(filepath.Join(src, "go.mod"), []byte("module hello\n\ngo 1.26\n"), 0o644))
	must(os.WriteFile(filepath.Join(src, "main.go"), []byte("package main\n\nfunc main() { println(\"hello\") }\n"), 0o644))
	out := run(t, nil, convoyBin, "image", "build", ".", "--dir", src, "--name", registry.Host+"/hello:1", flag)
	if !strings.Contains(out, "pushed "+registry.Host+"/hello:1") {
		t.Errorf("image build:\n%s", out)
	}

	// Not an archive: refused, and nothing is added.
	bad := filepath.Join(dir, "notes.txt")
	must(os.WriteFile(bad, []byte("not an image"), 0o644))
	b, err := exec.Command(convoyBin, "image", "push", bad, "--name", registry.Host+"/bad:1", flag).CombinedOutput()
	if err == nil || !strings.Contains(string(b), "not an image archive") {
		t.Errorf("image push of a text file: err=%v\n%s", err, b)
	}

	list := run(t, nil, convoyBin, "image", "list", flag)
	for _, want := range []string{registry.Host + "/library/nginx:1.27", registry.Host + "/hello:1"} {
		if !strings.Contains(list, want) {
			t.Errorf("image list lacks %s:\n%s", want, list)
		}
	}
	if strings.Contains(list, "bad") || strings.Count(list, "\n") != 3 {
		t.Errorf("image list, want a header and two images:\n%s", list)
	}
}
