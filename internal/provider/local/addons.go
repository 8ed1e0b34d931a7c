package local

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/convoy-dev/convoy/internal/image"
	"github.com/convoy-dev/convoy/internal/provider"
	"github.com/convoy-dev/convoy/internal/registry"
	"github.com/convoy-dev/convoy/internal/version"
)

// The add-ons of a cluster with real nodes (addons/addons.yaml): CoreDNS and the default
// StorageClass, on images the runtime pushes to the fleet registry from bin/.
var (
	//go:embed addons/addons.yaml
	addonsYAML string
	addonsTmpl = template.Must(template.New("addons").Option("missingkey=error").Parse(addonsYAML))
)

// imageSource is an image as pods name it (registry.Host/repo:tag) and the binary in bin/ it
// is made of.
type imageSource struct {
	repo, tag, binary string
	build             image.Build
}

func (i imageSource) ref() string { return i.repo + ":" + i.tag }

// pauseImage is PauseImage's source.
var pauseImage = imageSource{pauseRepo, pauseTag, "convoy-pause", image.Build{}}

// The add-ons' images.
var addonImages = []imageSource{
	{"coredns/coredns", version.CoreDNS, "images/coredns", image.Build{Base: true}},
	{"rancher/local-path-provisioner", version.LocalPath, "images/local-path-provisioner", image.Build{Base: true}},
	{"convoy/volume", "1", "convoy-volume", image.Build{}},
}

func addonImage(repo string) string {
	for _, a := range addonImages {
		if a.repo == repo {
			return registry.Host + "/" + a.repo + ":" + a.tag
		}
	}
	panic("no add-on image " + repo)
}

// AddonsFieldManager is the field manager of everything the runtime applies to its cluster.
const AddonsFieldManager = "convoy-runtime"

// addonsInterval is how often the runtime re-applies the add-ons, undoing changes to them.
const addonsInterval = 30 * time.Second

// renderAddons is the add-ons of a cluster whose volumes live in volumeDir.
func renderAddons(volumeDir string) ([]*unstructured.Unstructured, error) {
	var buf bytes.Buffer
	err := addonsTmpl.Execute(&buf, map[string]string{
		"DNS": ClusterDNS.String(), "Domain": ClusterDomain, "NodeKindLabel": provider.LabelNodeKind,
		"CoreDNSImage": addonImage("coredns/coredns"), "LocalPathImage": addonImage("rancher/local-path-provisioner"),
		"VolumeImage": addonImage("convoy/volume"), "VolumeDir": volumeDir,
	})
	if err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	for doc := range strings.SplitSeq(buf.String(), "\n---\n") {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			return nil, fmt.Errorf("add-ons: %w", err)
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
	return out, nil
}

// pushAddonImages puts the add-ons' images in the fleet registry, each only when it differs.
func pushAddonImages(ctx context.Context, cfg config) error {
	return pushImages(ctx, cfg.Registry, cfg.BinDir, addonImages)
}

// PushNodeImages puts every image a new cluster's real nodes need in the fleet registry at
// addr, each only when it differs: the pause image and the add-ons'. The hub calls it when it
// starts, so that the first cluster does not wait for them; each runtime checks again.
func PushNodeImages(ctx context.Context, addr, binDir string) error {
	return pushImages(ctx, addr, binDir, append([]imageSource{pauseImage}, addonImages...))
}

func pushImages(ctx context.Context, addr, binDir string, images []imageSource) error {
	var errs []error
	for _, a := range images {
		if _, err := registry.EnsureFromBinary(ctx, addr, a.ref(), filepath.Join(binDir, a.binary), a.build); err != nil {
			errs = append(errs, fmt.Errorf("image %s: %w (run `make`)", a.repo, err))
		}
	}
	return errors.Join(errs...)
}

// addonApplier applies a cluster's add-ons with server-side apply, taking over fields others
// changed. It is made once per runtime: the add-ons and the API's kinds do not change while it
// runs, so discovery happens on the first apply only.
type addonApplier struct {
	objs   []*unstructured.Unstructured
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newAddonApplier(cfg *rest.Config, objs []*unstructured.Unstructured) (*addonApplier, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &addonApplier{objs: objs, dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}, nil
}

func (a *addonApplier) apply(ctx context.Context) error {
	var errs []error
	for _, u := range a.objs {
		gvk := u.GroupVersionKind()
		m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			a.mapper.Reset() // the API may not have served the kind yet: look again next time
			errs = append(errs, fmt.Errorf("%s: %w", gvk.Kind, err))
			continue
		}
		var ri dynamic.ResourceInterface = a.dyn.Resource(m.Resource)
		if ns := u.GetNamespace(); ns != "" {
			ri = a.dyn.Resource(m.Resource).Namespace(ns)
		}
		if _, err := ri.Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: AddonsFieldManager, Force: true}); err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", gvk.Kind, u.GetName(), err))
		}
	}
	return errors.Join(errs...)
}
