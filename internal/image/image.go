// Package image makes and reads container images without Docker, with go-containerregistry:
// an image from a static binary, as ko does (optionally on a minimal base of CA certificates,
// /etc/passwd and /tmp), and the images in a docker-archive or OCI archive, checked whole
// before anyone uses them. The registry package and the CLI import it.
package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// LabelBinary is the label of an image made by FromBinary that holds the SHA-256 of its
// binary, so that whoever pushes it can tell whether the registry has it already.
const LabelBinary = "dev.convoy.binary.sha256"

// Build says how FromBinary makes an image.
type Build struct {
	// Args follow the binary in the entrypoint.
	Args []string
	// Labels are added to the image's configuration.
	Labels map[string]string
	// Base adds a minimal base: /etc/passwd and /etc/group with root and nobody, the host's
	// CA certificates (when it has them) and /tmp. Without it the image holds the binary only.
	Base bool
	// User runs the entrypoint as this user ("65534" for nobody); empty means root.
	User string
	// Companions are other static executables the image holds, each at /NAME (its base name)
	// in a layer of its own, so that a new entrypoint binary does not make them new layers.
	Companions []string
}

// LabelCompanions is the label of an image made by FromBinary with companions that holds
// CompanionsSum of them.
const LabelCompanions = "dev.convoy.companions.sha256"

// CompanionsSum is the SHA-256 of the companions' names and SHA-256s, in order ("" for none).
func CompanionsSum(paths []string) (string, error) {
	if len(paths) == 0 {
		return "", nil
	}
	h := sha256.New()
	for _, p := range paths {
		sum, err := BinarySum(p)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s=%s\n", path.Base(p), sum)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// FromBinary makes an image of one static executable for linux/amd64: a layer that holds it
// at /NAME (NAME is its base name), which is the entrypoint, on the base Build asks for. Its
// content depends on the binary and b alone, so building it twice gives the same image.
func FromBinary(binary string, b Build) (v1.Image, error) {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", binary, err)
	}
	sum := sha256.Sum256(bin)
	entry := "/" + path.Base(binary)
	var layers []v1.Layer
	if b.Base {
		base, err := layer(baseFiles())
		if err != nil {
			return nil, err
		}
		layers = append(layers, base)
	}
	for _, c := range b.Companions {
		data, err := os.ReadFile(c)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", c, err)
		}
		l, err := layer([]file{{name: path.Base(c), mode: 0o755, data: data}})
		if err != nil {
			return nil, fmt.Errorf("layer of %s: %w", c, err)
		}
		layers = append(layers, l)
	}
	companions, err := CompanionsSum(b.Companions)
	if err != nil {
		return nil, err
	}
	app, err := layer([]file{{name: entry[1:], mode: 0o755, data: bin}})
	if err != nil {
		return nil, fmt.Errorf("layer of %s: %w", binary, err)
	}
	img, err := mutate.AppendLayers(empty.Image, append(layers, app)...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Entrypoint = append([]string{entry}, b.Args...)
	cf.Config.User = b.User
	cf.Config.Labels = map[string]string{LabelBinary: hex.EncodeToString(sum[:])}
	if companions != "" {
		cf.Config.Labels[LabelCompanions] = companions
	}
	maps.Copy(cf.Config.Labels, b.Labels)
	if b.Base {
		cf.Config.Env = []string{"PATH=/", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
	}
	return mutate.ConfigFile(img, cf)
}

// BinarySum is the SHA-256 of a file, as LabelBinary records it.
func BinarySum(binary string) (string, error) {
	f, err := os.Open(binary)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

type file struct {
	name string
	mode int64
	data []byte
	dir  bool
}

// layer is a gzip layer (fastest compression: images move over loopback) of files, with
// fixed times and owners so that it is the same every time.
func layer(files []file) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}
		if f.dir {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	raw := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil },
		tarball.WithCompressionLevel(gzip.BestSpeed))
}

// hostCACertificates is where Debian keeps the CA bundle the base layer copies.
const hostCACertificates = "/etc/ssl/certs/ca-certificates.crt"

func baseFiles() []file {
	files := []file{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n")},
		{name: "etc/group", mode: 0o644, data: []byte("root:x:0:\nnobody:x:65534:\n")},
		{name: "tmp/", mode: 0o1777, dir: true},
	}
	if certs, err := os.ReadFile(hostCACertificates); err == nil {
		files = append(files, file{name: "etc/ssl/", mode: 0o755, dir: true}, file{name: "etc/ssl/certs/", mode: 0o755, dir: true},
			file{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: certs})
	}
	return files
}

// WriteArchive writes img as a docker-archive tarball tagged ref, which `docker load` and
// `convoy image push` take.
func WriteArchive(img v1.Image, ref, file string) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("image name %q: %w", ref, err)
	}
	tmp := file + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", file, err)
	}
	return os.Rename(tmp, file)
}

// Named is an image of an archive, with the name the archive gives it (empty when it gives
// none).
type Named struct {
	Name  string
	Image v1.Image
}

// ErrNotAnArchive says a file is neither a docker-archive nor an OCI archive.
var ErrNotAnArchive = errors.New("not an image archive: want the tar that `docker save` or `podman save` writes (docker-archive), or an OCI image layout as a tar (oci-archive)")

// Load reads the images of a docker-archive (manifest.json, what `docker save` writes) or an
// OCI archive (an OCI image layout as a tar: index.json and blobs/), and checks each one whole
// (every blob is there and matches its digest) before it returns it. Scratch is a directory it
// may unpack an OCI archive into.
func Load(file, scratch string) ([]Named, error) {
	entries, err := tarEntries(file)
	if err != nil {
		return nil, err
	}
	var out []Named
	switch {
	case entries["manifest.json"]:
		m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(file) })
		if err != nil {
			return nil, fmt.Errorf("%s: manifest.json: %w", file, err)
		}
		for i, d := range m {
			if len(d.RepoTags) == 0 {
				img, err := tarball.Image(func() (io.ReadCloser, error) { return os.Open(file) }, nil)
				if err != nil || len(m) > 1 {
					return nil, fmt.Errorf("%s: image %d has no name; save it with one (docker save NAME:TAG)", file, i+1)
				}
				out = append(out, Named{Image: img})
				continue
			}
			for _, rt := range d.RepoTags {
				tag, err := name.NewTag(rt)
				if err != nil {
					return nil, fmt.Errorf("%s: image name %q: %w", file, rt, err)
				}
				img, err := tarball.Image(func() (io.ReadCloser, error) { return os.Open(file) }, &tag)
				if err != nil {
					return nil, fmt.Errorf("%s: %s: %w", file, rt, err)
				}
				out = append(out, Named{Name: rt, Image: img})
			}
		}
	case entries["index.json"] && entries["oci-layout"]:
		dir, err := untar(file, scratch)
		if err != nil {
			return nil, err
		}
		idx, err := layout.ImageIndexFromPath(dir)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, fmt.Errorf("%s: index.json: %w", file, err)
		}
		for _, d := range im.Manifests {
			if !d.MediaType.IsImage() {
				return nil, fmt.Errorf("%s: %s is a %s; only single-platform images can be pushed (save the linux/amd64 image alone)", file, d.Digest, d.MediaType)
			}
			img, err := idx.Image(d.Digest)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", file, err)
			}
			// containerd and nerdctl put the full name in io.containerd.image.name; the OCI
			// annotation often holds the tag alone (BuildKit, oras): then the image has no name
			// here, and `convoy image push --name` gives it one.
			n := d.Annotations["io.containerd.image.name"]
			if ref := d.Annotations["org.opencontainers.image.ref.name"]; n == "" && strings.ContainsAny(ref, "/:") {
				n = ref
			}
			out = append(out, Named{Name: n, Image: img})
		}
	default:
		return nil, fmt.Errorf("%s: %w", file, ErrNotAnArchive)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no image", file)
	}
	for _, n := range out {
		if err := validate.Image(n.Image); err != nil {
			what := n.Name
			if what == "" {
				what = "its image"
			}
			return nil, fmt.Errorf("%s: %s is damaged: %w", file, what, err)
		}
	}
	return out, nil
}

// tarEntries lists the regular files of a tar archive, or says it is not one.
func tarEntries(file string) (map[string]bool, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	out := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, ErrNotAnArchive)
		}
		out[strings.TrimPrefix(path.Clean(h.Name), "./")] = true
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: %w", file, ErrNotAnArchive)
	}
	return out, nil
}

// untar unpacks the archive's regular files and directories into a new directory of
// scratch, refusing names that leave it.
func untar(file, scratch string) (string, error) {
	dir, err := os.MkdirTemp(scratch, "oci-")
	if err != nil {
		return "", err
	}
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return dir, nil
		}
		if err != nil {
			return "", fmt.Errorf("%s: %w", file, err)
		}
		rel := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if rel == "." || strings.HasPrefix(rel, "../") || path.IsAbs(rel) {
			if rel == "." {
				continue
			}
			return "", fmt.Errorf("%s: entry %q leaves the archive", file, h.Name)
		}
		target := filepath.Join(dir, filepath.FromSlash(rel))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return "", err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return "", err
			}
			out, err := os.Create(target)
			if err != nil {
				return "", err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return "", err
			}
		}
	}
}
