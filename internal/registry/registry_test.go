package registry_test

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/image"
	"github.com/convoy-dev/convoy/internal/registry"
)

func start(t *testing.T) *registry.Server {
	t.Helper()
	s, err := registry.Start(context.Background(), t.TempDir(), "127.0.0.1:0", hubtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// TestPushAndList pushes images as `convoy image push` does, from a docker-archive and from an
// OCI archive, and lists them with the names pods use.
func TestPushAndList(t *testing.T) {
	s := start(t)
	ctx := context.Background()
	dir := t.TempDir()

	web, err := random.Image(512, 2)
	must(t, err)
	docker := filepath.Join(dir, "web.tar")
	must(t, image.WriteArchive(web, "registry.convoy.local/web:1", docker))
	oci := ociArchive(t, dir)

	for _, file := range []string{docker, oci} {
		imgs, err := image.Load(file, t.TempDir())
		must(t, err)
		if len(imgs) != 1 || imgs[0].Name == "" {
			t.Fatalf("%s: loaded %+v, want one named image", filepath.Base(file), imgs)
		}
		if _, err := registry.Push(ctx, s.Addr(), imgs[0].Name, imgs[0].Image); err != nil {
			t.Fatal(err)
		}
	}
	got, err := registry.List(ctx, s.Addr())
	must(t, err)
	var names []string
	for _, e := range got {
		names = append(names, e.Name)
	}
	want := "registry.convoy.local/library/nginx:1.27 registry.convoy.local/web:1"
	if strings.Join(names, " ") != want {
		t.Fatalf("listed %v, want %s", names, want)
	}
	d, _ := web.Digest()
	if got[1].Digest != d.String() || got[1].Size == 0 {
		t.Errorf("web:1 listed as %+v, want digest %s and a size", got[1], d)
	}
}

// TestEnsureFromBinary pushes an image made from a binary once, and again only when the
// binary changes.
func TestEnsureFromBinary(t *testing.T) {
	s := start(t)
	ctx := context.Background()
	bin := filepath.Join(t.TempDir(), "tool")
	must(t, os.WriteFile(bin, []byte("#!/bin/true\nversion 1\n"), 0o755))
	for i, want := range []bool{true, false} {
		pushed, err := registry.EnsureFromBinary(ctx, s.Addr(), "registry.convoy.local/convoy/tool:1", bin, image.Build{})
		must(t, err)
		if pushed != want {
			t.Fatalf("call %d pushed = %v, want %v", i+1, pushed, want)
		}
	}
	must(t, os.WriteFile(bin, []byte("#!/bin/true\nversion 2\n"), 0o755))
	if pushed, err := registry.EnsureFromBinary(ctx, s.Addr(), "registry.convoy.local/convoy/tool:1", bin, image.Build{}); err != nil || !pushed {
		t.Fatalf("a changed binary was not pushed: %v %v", pushed, err)
	}
	tag, err := registry.Target(s.Addr(), "registry.convoy.local/convoy/tool:1")
	must(t, err)
	img, err := remote.Image(tag)
	must(t, err)
	cf, err := img.ConfigFile()
	must(t, err)
	if sum, _ := image.BinarySum(bin); cf.Config.Labels[image.LabelBinary] != sum || cf.Config.Entrypoint[0] != "/tool" {
		t.Errorf("image config %+v", cf.Config)
	}
}

// TestBadArchives: what is not a whole image archive is refused with a message that says what
// is wanted, before anything is pushed.
func TestBadArchives(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	must(t, os.WriteFile(text, []byte("not a tarball\n"), 0o644))
	if _, err := image.Load(text, dir); !errors.Is(err, image.ErrNotAnArchive) {
		t.Errorf("a text file: %v, want ErrNotAnArchive", err)
	}

	// A docker-archive with a layer cut short.
	img, err := random.Image(4096, 1)
	must(t, err)
	good := filepath.Join(dir, "good.tar")
	must(t, image.WriteArchive(img, "registry.convoy.local/x:1", good))
	cut := filepath.Join(dir, "cut.tar")
	truncateLayer(t, good, cut)
	if _, err := image.Load(cut, dir); err == nil {
		t.Error("an archive with a damaged layer was accepted")
	} else if !strings.Contains(err.Error(), "registry.convoy.local/x:1") {
		t.Errorf("the error does not name the image: %v", err)
	}
}

// ociArchive writes an OCI image layout with one image, named nginx:1.27, as a tar.
func ociArchive(t *testing.T, dir string) string {
	img, err := random.Image(256, 1)
	must(t, err)
	lp := filepath.Join(dir, "layout")
	p, err := layout.Write(lp, empty.Index)
	must(t, err)
	must(t, p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "nginx:1.27"})))
	out := filepath.Join(dir, "nginx.oci.tar")
	f, err := os.Create(out)
	must(t, err)
	tw := tar.NewWriter(f)
	must(t, filepath.WalkDir(lp, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(lp, path)
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: rel, Mode: 0o644, Size: int64(len(data))}); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	}))
	must(t, tw.Close())
	must(t, f.Close())
	return out
}

// truncateLayer copies a docker-archive, cutting its largest entry (a layer) in half.
func truncateLayer(t *testing.T, from, to string) {
	in, err := os.Open(from)
	must(t, err)
	defer in.Close()
	out, err := os.Create(to)
	must(t, err)
	defer out.Close()
	tr, tw := tar.NewReader(in), tar.NewWriter(out)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		data, err := io.ReadAll(tr)
		must(t, err)
		if strings.HasSuffix(h.Name, ".tar.gz") || len(data) > 2048 {
			data = data[:len(data)/2]
			h.Size = int64(len(data))
		}
		must(t, tw.WriteHeader(h))
		_, err = tw.Write(data)
		must(t, err)
	}
	must(t, tw.Close())
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestPullAddressIsReadOnly: what real nodes reach serves images and refuses pushes.
func TestPullAddressIsReadOnly(t *testing.T) {
	s, err := registry.Start(context.Background(), t.TempDir(), "127.0.0.1:0", hubtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	pull, err := s.ServePulls("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	img, err := image.FromBinary(filepath.Join(hubtest.BinDir(t), "convoy-pause"), image.Build{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := registry.Push(context.Background(), s.Addr(), registry.Host+"/ro/pause:1", img); err != nil {
		t.Fatal(err)
	}
	if _, err := registry.Push(context.Background(), pull, registry.Host+"/ro/other:1", img); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("a push to the read-only address: %v, want it refused as read-only", err)
	}
	entries, err := registry.List(context.Background(), pull)
	if err != nil || len(entries) != 1 || entries[0].Name != registry.Host+"/ro/pause:1" {
		t.Errorf("list through the read-only address: %+v, %v", entries, err)
	}
}
