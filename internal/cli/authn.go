package cli

import (
	"fmt"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

func newClusterAuthenticationCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "authentication-config",
		Short: "Print the AuthenticationConfiguration that makes an imported cluster's API server trust the hub's OIDC issuer",
		Long: `Print the AuthenticationConfiguration (apiserver.config.k8s.io/v1) of the OpenID Connect
issuer the hub trusts (convoy hub --oidc-issuer). Local clusters get it by themselves. For an
imported cluster, put the file on each of its control-plane hosts and start kube-apiserver
(Kubernetes 1.34 or newer, which reads apiserver.config.k8s.io/v1) with --authentication-config=PATH: its API server then takes the
issuer's ID tokens as the hub's does, so a person is the same user (oidc:EMAIL, in groups
oidc:GROUP) there, and that cluster's RBAC decides what they may do. The API server reads the
file again when it changes. It cannot be used beside the --oidc-* flags of kube-apiserver.`,
		Example: `  convoy cluster authentication-config > /etc/kubernetes/convoy-authentication.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			hc, err := g.hubClient()
			if err != nil {
				return err
			}
			var cm corev1.ConfigMap
			err = hc.Get(cmd.Context(), client.ObjectKey{Namespace: v1alpha1.SystemNamespace, Name: v1alpha1.AuthenticationConfigMap}, &cm)
			if apierrors.IsNotFound(err) {
				return fmt.Errorf("this hub trusts no OpenID Connect issuer: start it with --oidc-issuer URL (see convoy hub --help)")
			}
			if err != nil {
				return hubError("the hub", err)
			}
			fmt.Fprint(g.streams.Out, cm.Data[v1alpha1.AuthenticationKey])
			return nil
		},
	}
}
