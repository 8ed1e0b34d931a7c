// Package importer is the provider of clusters that Convoy did not make: EKS, GKE, kind or any
// cluster reachable with a kubeconfig. It only observes them; their lifecycle stays with the
// tools that made them. The kubeconfig comes from the Secret that spec.kubeconfigSecretRef
// names in convoy-system. Only the hub's composition root imports this package.
package importer

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/provider"
)

// Provider observes imported clusters.
type Provider struct {
	// Client reads Secrets in Namespace on the hub.
	Client client.Reader
	// Namespace holds the kubeconfig Secrets (convoy-system).
	Namespace string

	mu      sync.Mutex
	clients map[string]cached
}

type cached struct {
	raw    string
	client kubernetes.Interface
	host   string
}

var _ provider.Provider = (*Provider)(nil)

// Name is "import".
func (p *Provider) Name() v1alpha1.ProviderName { return v1alpha1.ProviderImport }

// ReadOnly is true: imported clusters are only observed.
func (p *Provider) ReadOnly() bool { return true }

// Validate checks that the kubeconfig Secret exists and holds a usable kubeconfig.
// A cluster without spec.kubeconfigSecretRef is registered through its agent alone: the hub
// never connects to it, and knows it only from its agent's heartbeats and inventory.
func (p *Provider) Validate(ctx context.Context, c *v1alpha1.Cluster) error {
	if c.Spec.KubeconfigSecretRef == nil {
		return nil
	}
	_, err := p.kubeconfig(ctx, c)
	return err
}

// Create checks that the cluster answers; importing changes nothing on it.
func (p *Provider) Create(ctx context.Context, c *v1alpha1.Cluster) error {
	if c.Spec.KubeconfigSecretRef == nil {
		return nil // registered through its agent: nothing to reach
	}
	m, err := p.client(ctx, c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := m.client.Discovery().ServerVersion(); err != nil {
		return fmt.Errorf("cannot reach the imported cluster at %s: %w", m.host, err)
	}
	return nil
}

// ScalePools is refused: the cluster's nodes belong to whoever made it.
func (p *Provider) ScalePools(context.Context, *v1alpha1.Cluster) error { return provider.ErrReadOnly }

// Upgrade is refused: the cluster's version belongs to whoever made it.
func (p *Provider) Upgrade(context.Context, *v1alpha1.Cluster) error { return provider.ErrReadOnly }

// Delete forgets the cluster; the cluster itself is left as it is.
func (p *Provider) Delete(_ context.Context, name string) error {
	p.mu.Lock()
	delete(p.clients, name)
	p.mu.Unlock()
	return nil
}

// Kubeconfig returns the imported kubeconfig.
func (p *Provider) Kubeconfig(ctx context.Context, c *v1alpha1.Cluster) ([]byte, error) {
	return p.kubeconfig(ctx, c)
}

// Status observes the cluster through its API server.
func (p *Provider) Status(ctx context.Context, c *v1alpha1.Cluster) (provider.Status, error) {
	st := provider.Status{Exists: true, Running: true}
	if c.Spec.KubeconfigSecretRef == nil {
		return agentReported(c), nil
	}
	err := p.Client.Get(ctx, client.ObjectKey{Namespace: p.Namespace, Name: c.Spec.KubeconfigSecretRef.Name}, &corev1.Secret{})
	if apierrors.IsNotFound(err) {
		return provider.Status{}, nil // not imported (any more): nothing to observe
	}
	m, err := p.client(ctx, c)
	if err != nil {
		st.Progress = err.Error()
		return st, err
	}
	st.Endpoint = m.host
	if err := provider.Observe(ctx, m.client, &st); err != nil {
		st.Progress = err.Error()
	}
	return st, nil
}

// agentReported is what the agent of a cluster registered without a kubeconfig last said.
// Until its agent first reports, the cluster does not exist as far as the provider can tell.
func agentReported(c *v1alpha1.Cluster) provider.Status {
	inv := c.Status.Inventory
	if inv == nil {
		return provider.Status{Progress: "waiting for the cluster's agent to join and report (convoy cluster join " + c.Name + ")"}
	}
	return provider.Status{Exists: true, Running: true, APIReady: inv.APIHealthy, Version: inv.KubernetesVersion, Nodes: inv.Nodes,
		Allocatable: inv.Allocatable, Progress: "the agent reports that the cluster's API server is not ready"}
}

func (p *Provider) kubeconfig(ctx context.Context, c *v1alpha1.Cluster) ([]byte, error) {
	if c.Spec.KubeconfigSecretRef == nil {
		return nil, fmt.Errorf("cluster %q was registered through its agent alone; the hub holds no kubeconfig for it", c.Name)
	}
	secret := &corev1.Secret{}
	key := client.ObjectKey{Namespace: p.Namespace, Name: c.Spec.KubeconfigSecretRef.Name}
	if err := p.Client.Get(ctx, key, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("secret %s/%s with the cluster's kubeconfig does not exist; create it (convoy cluster import does)", key.Namespace, key.Name)
		}
		return nil, err
	}
	raw := secret.Data[v1alpha1.KubeconfigSecretKey]
	if len(raw) == 0 {
		return nil, fmt.Errorf("secret %s/%s has no %q key", key.Namespace, key.Name, v1alpha1.KubeconfigSecretKey)
	}
	if _, err := clientcmd.RESTConfigFromKubeConfig(raw); err != nil {
		return nil, fmt.Errorf("secret %s/%s does not hold a usable kubeconfig: %w", key.Namespace, key.Name, err)
	}
	return raw, nil
}

func (p *Provider) client(ctx context.Context, c *v1alpha1.Cluster) (cached, error) {
	raw, err := p.kubeconfig(ctx, c)
	if err != nil {
		return cached{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if m, ok := p.clients[c.Name]; ok && m.raw == string(raw) {
		return m, nil
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(raw)
	if err != nil {
		return cached{}, err
	}
	cfg.Timeout = 15 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return cached{}, err
	}
	m := cached{raw: string(raw), client: cs, host: cfg.Host}
	if p.clients == nil {
		p.clients = map[string]cached{}
	}
	p.clients[c.Name] = m
	return m, nil
}
