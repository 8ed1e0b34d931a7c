package hub

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/convoy-dev/convoy/config/crd"
	"github.com/convoy-dev/convoy/internal/version"
)

// fieldManager is the hub's server-side apply identity.
const fieldManager = "convoy-hub"

// installCRDs applies Convoy's embedded CRDs and the Gateway API's from binDir with server-side
// apply, which creates them on a new hub and upgrades them on an existing one, then waits until
// each is established.
func installCRDs(ctx context.Context, cfg *rest.Config, binDir string, timeout time.Duration, log *slog.Logger) error {
	crds, err := crd.Load()
	if err != nil {
		return err
	}
	gw, err := gatewayAPICRDs(binDir)
	if err != nil {
		return err
	}
	crds = append(crds, gw...)
	scheme := runtime.NewScheme()
	if err := apiextensionsv1.AddToScheme(scheme); err != nil {
		return err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("build client: %w", err)
	}
	for _, def := range crds {
		raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(def)
		if err != nil {
			return fmt.Errorf("convert CRD %s: %w", def.Name, err)
		}
		u := &unstructured.Unstructured{Object: raw}
		u.SetAPIVersion("apiextensions.k8s.io/v1")
		u.SetKind("CustomResourceDefinition")
		unstructured.RemoveNestedField(u.Object, "status")
		unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(fieldManager), client.ForceOwnership); err != nil {
			return fmt.Errorf("install CRD %s: %w", def.Name, err)
		}
	}
	for _, def := range crds {
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
			got := &apiextensionsv1.CustomResourceDefinition{}
			if err := c.Get(ctx, client.ObjectKey{Name: def.Name}, got); err != nil {
				return false, nil
			}
			return established(got), nil
		})
		if err != nil {
			return fmt.Errorf("CRD %s not established after %s: %w", def.Name, timeout, err)
		}
	}
	log.Debug("CRDs installed", "count", len(crds))
	return nil
}

// gatewayAPICRDs are the Gateway API's standard CRDs, as `make` copies them into
// binDir/gateway-api at the version internal/version pins.
func gatewayAPICRDs(binDir string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	dir := filepath.Join(binDir, "gateway-api")
	stamp, err := os.ReadFile(filepath.Join(binDir, ".versions", "gateway-api"))
	if err != nil || strings.TrimSpace(string(stamp)) != version.GatewayAPI {
		return nil, fmt.Errorf("the Gateway API CRDs %s are missing from %s; run `make`", version.GatewayAPI, dir)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("the Gateway API CRDs are missing from %s; run `make`", dir)
	}
	var out []*apiextensionsv1.CustomResourceDefinition
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		def := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.Unmarshal(raw, def); err != nil {
			return nil, fmt.Errorf("decode %s: %w", f, err)
		}
		out = append(out, def)
	}
	return out, nil
}

func established(c *apiextensionsv1.CustomResourceDefinition) bool {
	for _, cond := range c.Status.Conditions {
		if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
			return true
		}
	}
	return false
}
