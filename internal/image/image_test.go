package image

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestFromBinaryCompanions: companions are files of their own layers beside the entrypoint, and
// the image's label changes with any of them, so that a registry's copy is pushed again.
func TestFromBinaryCompanions(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	main, helper := write("convoy", "main binary"), write("vmagent", "collector v1")
	img, err := FromBinary(main, Build{Companions: []string{helper}})
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 2 {
		t.Fatalf("layers: %d, %v; want the companion's and the entrypoint's", len(layers), err)
	}
	files := map[string]string{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(tr)
			files[h.Name] = string(data)
		}
		rc.Close()
	}
	if files["vmagent"] != "collector v1" || files["convoy"] != "main binary" {
		t.Errorf("files in the image: %v", files)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	before := cf.Config.Labels[LabelCompanions]
	if want, _ := CompanionsSum([]string{helper}); before == "" || before != want {
		t.Errorf("companions label %q, want %q", before, want)
	}
	write("vmagent", "collector v2")
	if after, _ := CompanionsSum([]string{helper}); after == before {
		t.Error("the companions' sum did not change with a companion")
	}
	if none, _ := CompanionsSum(nil); none != "" {
		t.Errorf("the sum of no companions is %q, want empty (the label of images without any)", none)
	}
}
