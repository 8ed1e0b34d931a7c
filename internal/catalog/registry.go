package catalog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"k8s.io/apimachinery/pkg/util/version"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/registry"
)

// ChartLayerType is the media type of a chart's content in an OCI artifact (Helm's).
const ChartLayerType = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"

// Entry is a package the registry holds: its newest version, and every version, newest first.
type Entry struct {
	*Package
	Versions []string
}

// ErrNotFound is returned for a package or version the registry does not hold.
var ErrNotFound = errors.New("not in the catalog")

// List reads the catalog: every package under CatalogRepository in the registry at addr
// (HOST:PORT, plain HTTP), by name.
func List(ctx context.Context, addr string) ([]Entry, error) {
	all, err := registry.Repositories(ctx, addr)
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, repo := range all {
		if !strings.HasPrefix(repo, v1alpha1.CatalogRepository+"/") {
			continue
		}
		e, err := entry(ctx, addr, strings.TrimPrefix(repo, v1alpha1.CatalogRepository+"/"))
		if errors.Is(err, ErrNotFound) {
			continue // a repository without versions
		}
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Versions lists the versions of package pkg in the registry, newest first.
func Versions(ctx context.Context, addr, pkg string) ([]string, error) {
	r, err := name.NewRepository(addr+"/"+v1alpha1.CatalogRepository+"/"+pkg, name.Insecure)
	if err != nil {
		return nil, fmt.Errorf("package name %q: %w", pkg, err)
	}
	tags, err := remote.List(r, remote.WithContext(ctx))
	if isNotFound(err) || (err == nil && len(tags) == 0) {
		return nil, fmt.Errorf("package %q: %w (convoy catalog list shows what it has)", pkg, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("list versions of %s in the fleet registry at %s: %w", pkg, addr, err)
	}
	type tv struct {
		tag string
		v   *version.Version
	}
	var vs []tv
	for _, t := range tags {
		// OCI tags cannot hold '+': Helm writes build metadata as '_'.
		if v, err := version.ParseSemantic(strings.ReplaceAll(t, "_", "+")); err == nil {
			vs = append(vs, tv{t, v})
		}
	}
	slices.SortFunc(vs, func(a, b tv) int { c, _ := a.v.Compare(b.v.String()); return -c })
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.tag
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("package %q: %w (its tags are not versions)", pkg, ErrNotFound)
	}
	return out, nil
}

func entry(ctx context.Context, addr, pkg string) (Entry, error) {
	vs, err := Versions(ctx, addr, pkg)
	if err != nil {
		return Entry{}, err
	}
	p, _, err := Fetch(ctx, addr, pkg, vs[0])
	if err != nil {
		return Entry{}, err
	}
	return Entry{Package: p, Versions: vs}, nil
}

// Fetch reads version v of package pkg ("" for the newest): its metadata and its chart
// archive.
func Fetch(ctx context.Context, addr, pkg, v string) (*Package, []byte, error) {
	if v == "" {
		vs, err := Versions(ctx, addr, pkg)
		if err != nil {
			return nil, nil, err
		}
		v = vs[0]
	}
	ref, err := name.NewTag(addr+"/"+v1alpha1.CatalogRepository+"/"+pkg+":"+strings.TrimPrefix(strings.ReplaceAll(v, "+", "_"), "v"), name.Insecure)
	if err != nil {
		return nil, nil, fmt.Errorf("package %s version %q: %w", pkg, v, err)
	}
	img, err := remote.Image(ref, remote.WithContext(ctx))
	if isNotFound(err) {
		vs, _ := Versions(ctx, addr, pkg)
		return nil, nil, fmt.Errorf("package %s has no version %s (it has %s): %w", pkg, v, strings.Join(vs, ", "), ErrNotFound)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read package %s %s from the fleet registry at %s: %w", pkg, v, addr, err)
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, nil, fmt.Errorf("read package %s %s: %w", pkg, v, err)
	}
	for _, l := range m.Layers {
		if string(l.MediaType) != ChartLayerType {
			continue
		}
		layer, err := img.LayerByDigest(l.Digest)
		if err != nil {
			return nil, nil, err
		}
		rc, err := layer.Compressed()
		if err != nil {
			return nil, nil, fmt.Errorf("read package %s %s: %w", pkg, v, err)
		}
		tgz, err := io.ReadAll(io.LimitReader(rc, 64<<20))
		rc.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("read package %s %s: %w", pkg, v, err)
		}
		p, err := LoadArchive(tgz)
		if err != nil {
			return nil, nil, fmt.Errorf("package %s %s in the registry: %w", pkg, v, err)
		}
		return p, tgz, nil
	}
	return nil, nil, fmt.Errorf("%s is not a Helm chart (no layer of type %s)", ref, ChartLayerType)
}

func isNotFound(err error) bool {
	var te *transport.Error
	return errors.As(err, &te) && (te.StatusCode == http.StatusNotFound)
}
