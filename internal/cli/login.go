package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/term"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/identity"
)

// loginContext is the kubeconfig context (and cluster and user) that `convoy login` writes.
const loginContext = "convoy"

func newLoginCmd(g *globals) *cobra.Command {
	var server, caFile, output string
	var browser bool
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Sign in to the hub with your own identity, and write a kubeconfig that uses it",
		Long: `Sign in to the hub's OpenID Connect issuer (or the one it trusts) and write a kubeconfig
whose user is ` + "`convoy auth token`" + `: kubectl and helm then act as you (oidc:EMAIL, in groups
oidc:GROUP), at the hub and, through it, on every cluster (convoy cluster kubeconfig NAME
--via-hub --kubeconfig THAT-FILE), and RBAC decides what you may do. Tokens last 10 minutes
and are refreshed by themselves until the sign-in ends (12 hours); ` + "`convoy logout`" + ` forgets
them.

The hub is found in the hub kubeconfig (--kubeconfig, $CONVOY_KUBECONFIG, the default data
dir), or given with --server and --certificate-authority; it publishes its issuer to anyone
(ConfigMap kube-public/convoy-login). You sign in on the issuer's page: with the device flow
(the default; open the page it prints, on any device), or with --browser, on a loopback port
of this machine (authorization code with PKCE).`,
		Example: `  convoy login
  export KUBECONFIG=~/.convoy/login.kubeconfig
  kubectl auth whoami`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			hubCfg, err := g.loginHub(server, caFile)
			if err != nil {
				return err
			}
			lc, err := loginConfig(cmd.Context(), hubCfg)
			if err != nil {
				return err
			}
			errOut := g.streams.ErrOut
			var s *identity.Session
			if browser {
				s, err = identity.BrowserLogin(cmd.Context(), lc, func(url string) {
					fmt.Fprintf(errOut, "To sign in, open this page in a browser on this machine:\n\n  %s\n\nWaiting for you to sign in...\n", url)
				})
			} else {
				s, err = identity.DeviceLogin(cmd.Context(), lc, func(uri, code, complete string) {
					fmt.Fprintf(errOut, "To sign in, open\n\n  %s\n\nor open %s and type the code %s.\nWaiting for you to sign in...\n", complete, uri, code)
				})
			}
			if err != nil {
				return fmt.Errorf("login: %w", err)
			}
			if err := identity.DefaultTokenCache().Save(s); err != nil {
				return fmt.Errorf("keep the tokens: %w", err)
			}
			if output == "" {
				output = defaultLoginKubeconfig()
			}
			if err := writeLoginKubeconfig(output, hubCfg, lc); err != nil {
				return err
			}
			claims, _ := identity.Claims(s.IDToken)
			var groups []string
			if gs, ok := claims["groups"].([]any); ok {
				for _, g := range gs {
					groups = append(groups, fmt.Sprint(g))
				}
			}
			fmt.Fprintf(g.streams.Out, "Logged in as %v (groups: %s).\nkubectl and helm act as you with:\n  export KUBECONFIG=%s\n",
				claims["email"], strings.Join(groups, ", "), output)
			return nil
		},
	}
	cmd.Flags().StringVar(&server, "server", "", "the hub's API server URL (default: the hub kubeconfig's)")
	cmd.Flags().StringVar(&caFile, "certificate-authority", "", "the CA (PEM) of the hub's API server, with --server (default: the host's roots)")
	cmd.Flags().BoolVar(&browser, "browser", false, "sign in in a browser on this machine (authorization code with PKCE, answered on a loopback port) instead of the device flow")
	cmd.Flags().StringVar(&output, "output", "", "the kubeconfig to write (default ~/.convoy/login.kubeconfig)")
	return cmd
}

func defaultLoginKubeconfig() string {
	home, err := os.UserHomeDir()
	if err != nil {
		home = "."
	}
	return filepath.Join(home, ".convoy", "login.kubeconfig")
}

// loginHub is how to reach the hub's API server, with no credentials.
func (g *globals) loginHub(server, caFile string) (*rest.Config, error) {
	if server != "" {
		cfg := &rest.Config{Host: server}
		if caFile != "" {
			ca, err := os.ReadFile(caFile)
			if err != nil {
				return nil, fmt.Errorf("--certificate-authority: %w", err)
			}
			cfg.CAData = ca
		}
		return cfg, nil
	}
	if caFile != "" {
		return nil, usageError("--certificate-authority goes with --server")
	}
	full, err := g.restConfig()
	if err != nil {
		return nil, fmt.Errorf("%w (or name the hub with --server)", err)
	}
	cfg := rest.AnonymousClientConfig(full)
	return cfg, nil
}

// loginConfig reads the issuer the hub publishes (v1alpha1.LoginConfigMap), anonymously.
func loginConfig(ctx context.Context, hub *rest.Config) (identity.LoginConfig, error) {
	cs, err := kubernetes.NewForConfig(hub)
	if err != nil {
		return identity.LoginConfig{}, err
	}
	cm, err := cs.CoreV1().ConfigMaps(v1alpha1.LoginNamespace).Get(ctx, v1alpha1.LoginConfigMap, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return identity.LoginConfig{}, fmt.Errorf("the hub at %s publishes no issuer to sign in to: it was started with --no-issuer", hub.Host)
	case errors.As(err, new(x509.UnknownAuthorityError)) || errors.As(err, new(*tls.CertificateVerificationError)):
		return identity.LoginConfig{}, fmt.Errorf("the hub at %s has a certificate this machine does not trust: pass --certificate-authority with the hub's CA (pki/ca.crt in its data dir): %w", hub.Host, err)
	case err != nil:
		return identity.LoginConfig{}, hubError(hub.Host, fmt.Errorf("read the hub's issuer (ConfigMap %s/%s): %w", v1alpha1.LoginNamespace, v1alpha1.LoginConfigMap, err))
	}
	return identity.LoginConfig{Issuer: cm.Data[v1alpha1.LoginIssuerKey], ClientID: cm.Data[v1alpha1.LoginClientIDKey], IssuerCA: cm.Data[v1alpha1.LoginIssuerCAKey]}, nil
}

// writeLoginKubeconfig writes a kubeconfig for the hub whose user is `convoy auth token`.
func writeLoginKubeconfig(path string, hub *rest.Config, lc identity.LoginConfig) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the convoy executable: %w", err)
	}
	ca := hub.CAData
	if len(ca) == 0 && hub.CAFile != "" {
		if ca, err = os.ReadFile(hub.CAFile); err != nil {
			return fmt.Errorf("read the hub's CA: %w", err)
		}
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[loginContext] = &clientcmdapi.Cluster{Server: hub.Host, CertificateAuthorityData: ca}
	cfg.AuthInfos[loginContext] = &clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{
		APIVersion: "client.authentication.k8s.io/v1", Command: self,
		Args:            []string{"auth", "token", "--issuer", lc.Issuer, "--client-id", lc.ClientID},
		InteractiveMode: clientcmdapi.NeverExecInteractiveMode,
	}}
	cfg.Contexts[loginContext] = &clientcmdapi.Context{Cluster: loginContext, AuthInfo: loginContext, Namespace: "default"}
	cfg.CurrentContext = loginContext
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func newLogoutCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "Forget the tokens of `convoy login`, and end the sign-in at the issuer",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sessions, paths, err := identity.DefaultTokenCache().All()
			if err != nil {
				return err
			}
			if len(paths) == 0 {
				fmt.Fprintln(g.streams.Out, "Not logged in.")
				return nil
			}
			for i, p := range paths {
				if i < len(sessions) {
					if err := sessions[i].Revoke(cmd.Context()); err != nil {
						fmt.Fprintf(g.streams.ErrOut, "warning: the issuer did not end the sign-in (%v); its tokens are forgotten here, and the ID token ends at its expiry\n", err)
					}
				}
				if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
					return err
				}
				_ = os.Remove(p + ".lock")
			}
			for _, s := range sessions {
				fmt.Fprintf(g.streams.Out, "Logged out of %s.\n", s.Issuer)
			}
			return nil
		},
	}
}

func newAuthCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "auth", Short: "Credentials for kubectl and helm (used by the kubeconfig of convoy login)"}
	var issuer, clientID string
	token := &cobra.Command{
		Use:   "token",
		Short: "Print an ExecCredential with a fresh ID token: the kubeconfig's exec credential plugin",
		Long: `Print an ExecCredential (client.authentication.k8s.io/v1) with the ID token of your
sign-in (convoy login), refreshed with the issuer when it expires within a minute. kubectl runs
it from the kubeconfig that convoy login writes; when the sign-in has ended, it fails and says
to log in again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := identity.DefaultTokenCache().Fresh(cmd.Context(), issuer, clientID)
			if errors.Is(err, identity.ErrNotLoggedIn) {
				return fmt.Errorf("%w; run `convoy login`", err)
			}
			if err != nil {
				return err
			}
			cred := map[string]any{
				"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
				"status": map[string]any{"token": s.IDToken, "expirationTimestamp": s.Expiry.UTC().Format(time.RFC3339)},
			}
			return json.NewEncoder(g.streams.Out).Encode(cred)
		},
	}
	token.Flags().StringVar(&issuer, "issuer", "", "the issuer of the sign-in")
	token.Flags().StringVar(&clientID, "client-id", v1alpha1.IssuerClientID, "the client of the sign-in")
	_ = token.MarkFlagRequired("issuer")
	cmd.AddCommand(token)
	return cmd
}

func newUserCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "user", Short: "People who sign in to the hub's own issuer (convoy login)"}
	var email string
	var groups []string
	var passwordStdin bool
	add := &cobra.Command{
		Use:   "add NAME --email EMAIL [--group TEAM]... [--password-stdin]",
		Short: "Add a person to the hub's issuer, or change their email, groups or password",
		Long: `Add a person (a User at the hub) who signs in to the hub's own OpenID Connect issuer with
convoy login, as NAME or EMAIL. The API servers know them as oidc:EMAIL in the groups
oidc:TEAM: bind those with plain RBAC (see examples/teams). Only the password's bcrypt hash is
stored. Running it again for NAME replaces the email, groups and password.`,
		Example: `  echo 's3cret-pass' | convoy user add alice --email alice@example.com --group team-shop --password-stdin`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if email == "" {
				return usageError("--email is required: the person's address, their user name on every cluster")
			}
			password, err := g.readPassword(passwordStdin)
			if err != nil {
				return err
			}
			if len(password) < 8 {
				return errors.New("the password is too short: use 8 characters or more")
			}
			hash, err := bcrypt.GenerateFromPassword(password, bcrypt.DefaultCost)
			if err != nil {
				return err
			}
			c, err := g.hubClient()
			if err != nil {
				return err
			}
			users := &v1alpha1.UserList{}
			if err := c.List(cmd.Context(), users); err != nil {
				return fmt.Errorf("list users: %w", err)
			}
			for _, other := range users.Items {
				if other.Name != args[0] && other.Spec.Email == email {
					return fmt.Errorf("user %q has the email %s already: each person needs an address of their own, their user name on every cluster", other.Name, email)
				}
			}
			u := &v1alpha1.User{ObjectMeta: metav1.ObjectMeta{Name: args[0]}}
			op, err := controllerutil.CreateOrUpdate(cmd.Context(), c, u, func() error {
				// A disabled person stays disabled: `kubectl edit user` turns it off.
				u.Spec = v1alpha1.UserSpec{Email: email, Groups: groups, PasswordHash: string(hash), Disabled: u.Spec.Disabled}
				return nil
			})
			if err != nil {
				return fmt.Errorf("user %q: %w", args[0], err)
			}
			fmt.Fprintf(g.streams.Out, "user/%s %s: signs in as %s or %s, is oidc:%s in groups %s\n", u.Name, op, u.Name, email, email, prefixed(groups))
			return nil
		},
	}
	add.Flags().StringVar(&email, "email", "", "the person's email: their user name on the clusters (oidc:EMAIL)")
	add.Flags().StringSliceVar(&groups, "group", nil, "a team the person is in (oidc:TEAM); repeat for more")
	add.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from standard input (else it is asked for on the terminal)")
	cmd.AddCommand(add)
	return cmd
}

func prefixed(groups []string) string {
	if len(groups) == 0 {
		return "(none)"
	}
	out := make([]string, len(groups))
	for i, g := range groups {
		out[i] = "oidc:" + g
	}
	return strings.Join(out, ", ")
}

// readPassword reads a password from standard input, or asks for it twice on the terminal.
func (g *globals) readPassword(fromStdin bool) ([]byte, error) {
	if fromStdin {
		line, err := bufio.NewReader(g.streams.In).ReadString('\n')
		if err != nil && line == "" {
			return nil, fmt.Errorf("read the password from standard input: %w", err)
		}
		return []byte(strings.TrimRight(line, "\r\n")), nil
	}
	f, ok := g.streams.In.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, usageError("no terminal to ask for the password on: pass it with --password-stdin")
	}
	fmt.Fprint(g.streams.ErrOut, "Password: ")
	p1, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(g.streams.ErrOut)
	if err != nil {
		return nil, err
	}
	fmt.Fprint(g.streams.ErrOut, "Again: ")
	p2, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(g.streams.ErrOut)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(p1, p2) {
		return nil, errors.New("the two passwords differ")
	}
	return p1, nil
}
