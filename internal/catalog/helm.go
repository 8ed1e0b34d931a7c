package catalog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/image"
	"github.com/convoy-dev/convoy/internal/registry"
)

// Helm runs the Helm program (v3) for the catalog: against the hub with Kubeconfig, and
// against the fleet registry at plain HTTP.
type Helm struct {
	// Bin is the helm program (FindHelm).
	Bin string
	// Kubeconfig is the hub's.
	Kubeconfig string
}

// FindHelm finds helm in binDir (kubeproc.DefaultBinDir: $CONVOY_BIN_DIR, else beside the
// running convoy, where make builds both), else on PATH.
func FindHelm(binDir string) (string, error) {
	p := filepath.Join(binDir, "helm")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	if p, err := exec.LookPath("helm"); err == nil {
		return p, nil
	}
	return "", errors.New("helm (v3) is needed for the catalog and was found neither beside convoy nor on PATH; `make` builds it into bin/")
}

// Run runs helm with args and returns its standard output; an error carries what helm said.
func (h Helm) Run(ctx context.Context, args ...string) ([]byte, error) {
	if h.Kubeconfig != "" {
		args = append(args, "--kubeconfig", h.Kubeconfig)
	}
	cmd := exec.CommandContext(ctx, h.Bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Helm's own settings and cache in the user's cache dir: not the user's own Helm
	// repositories and registry logins, and not a shared, predictable path in /tmp.
	if home, err := os.UserCacheDir(); err == nil {
		home = filepath.Join(home, "convoy", "helm")
		cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+home, "HELM_CACHE_HOME="+filepath.Join(home, "cache"), "HELM_DATA_HOME="+filepath.Join(home, "data"))
	}
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		msg = strings.TrimPrefix(msg, "Error: ")
		if msg == "" {
			msg = err.Error()
		}
		return stdout.Bytes(), fmt.Errorf("helm %s: %s", args[0], msg)
	}
	return stdout.Bytes(), nil
}

// Archive packages the chart in dir into a .tgz in out and returns its path.
func (h Helm) Archive(ctx context.Context, dir, out string) (string, error) {
	b, err := Helm{Bin: h.Bin}.Run(ctx, "package", dir, "--destination", out)
	if err != nil {
		return "", err
	}
	// "Successfully packaged chart and saved it to: PATH"
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndex(s, ": "); i >= 0 {
		return s[i+2:], nil
	}
	return "", fmt.Errorf("helm package said %q", s)
}

// PushChart pushes a packaged chart to the catalog of the registry at addr.
func (h Helm) PushChart(ctx context.Context, tgz, addr string) error {
	_, err := Helm{Bin: h.Bin}.Run(ctx, "push", tgz, "oci://"+addr+"/"+v1alpha1.CatalogRepository, "--plain-http")
	return err
}

// PushImages makes p's images and pushes those the registry at addr lacks or has from other
// packages, with the .deb files cached in cache (~/.cache/convoy/debian) and the executables
// of Go modules beside it (~/.cache/convoy/go).
func PushImages(ctx context.Context, p *Package, addr, cache string, progress io.Writer) error {
	for _, img := range p.Meta.Images {
		start := time.Now()
		var made v1.Image
		var what string
		if img.Go != nil {
			g := *img.Go
			plan, err := image.ResolveGo(ctx, g)
			if err != nil {
				return fmt.Errorf("image %s: %w", img.Name, err)
			}
			what = fmt.Sprintf("Go module %s@%s", g.Module, g.Version)
			if have, err := registry.Labels(ctx, addr, img.Name); err == nil && have[image.LabelGo] == plan.Sum {
				fmt.Fprintf(progress, "    image %s is in the registry already (%s)\n", img.Name, what)
				continue
			}
			bin, err := image.BuildGo(ctx, g, plan, filepath.Join(filepath.Dir(cache), "go"), progress)
			if err != nil {
				return fmt.Errorf("image %s: %w", img.Name, err)
			}
			if made, err = image.FromGo(g, plan, bin); err != nil {
				return fmt.Errorf("image %s: %w", img.Name, err)
			}
		} else {
			d := *img.Debian
			plan, err := image.ResolveDebian(ctx, d, cache, progress)
			if err != nil {
				return fmt.Errorf("image %s: %w", img.Name, err)
			}
			what = fmt.Sprintf("%d Debian packages", len(plan.Packages))
			if have, err := registry.Labels(ctx, addr, img.Name); err == nil && have[image.LabelDebian] == plan.Sum {
				fmt.Fprintf(progress, "    image %s is in the registry already (%s)\n", img.Name, what)
				continue
			}
			if made, err = image.FromDebian(ctx, d, plan, cache); err != nil {
				return fmt.Errorf("image %s: %w", img.Name, err)
			}
		}
		if _, err := registry.Push(ctx, addr, img.Name, made); err != nil {
			return err
		}
		size := int64(0)
		if m, err := made.Manifest(); err == nil {
			for _, l := range m.Layers {
				size += l.Size
			}
		}
		fmt.Fprintf(progress, "    image %s made of %s (%.1f MiB) and pushed in %s\n", img.Name, what,
			float64(size)/(1<<20), time.Since(start).Round(100*time.Millisecond))
	}
	return nil
}
