package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hub"
)

// kubeconfigPath finds the hub's kubeconfig: --kubeconfig, then $CONVOY_KUBECONFIG, then the
// kubeconfig in the default data dir.
func (g *globals) kubeconfigPath() string {
	if g.hubKubeconfig != "" {
		return g.hubKubeconfig
	}
	if g.kubeconfig != "" {
		return g.kubeconfig
	}
	if p := os.Getenv("CONVOY_KUBECONFIG"); p != "" {
		return p
	}
	return hub.Layout{Dir: hub.DefaultDataDir()}.Kubeconfig()
}

// restConfig loads the hub's client configuration.
func (g *globals) restConfig() (*rest.Config, error) {
	path := g.kubeconfigPath()
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no hub kubeconfig at %s: start a hub with `convoy hub` (or `make up`), or pass --kubeconfig or set CONVOY_KUBECONFIG", path)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("load hub kubeconfig %s: %w", filepath.Clean(path), err)
	}
	return cfg, nil
}

// scheme knows the built-in types and Convoy's.
func scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = v1alpha1.AddToScheme(s)
	_ = gatewayv1.Install(s)
	return s
}

// hubClient returns a client for the hub.
func (g *globals) hubClient() (client.Client, error) {
	cfg, err := g.restConfig()
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme()})
	if err != nil {
		return nil, hubError(cfg.Host, err)
	}
	return c, nil
}

// hubError explains a failure to talk to the hub.
func hubError(host string, err error) error {
	var netErr interface{ Timeout() bool }
	if (errors.As(err, &netErr) && netErr.Timeout()) || errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("cannot reach the hub at %s: %w; is `convoy hub` running?", host, err)
	}
	return err
}
