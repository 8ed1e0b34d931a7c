package main_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/convoy-dev/convoy/internal/hubtest"
)

// checkTeamLogin is issue 17 end to end on `convoy up`'s fleet: two teams' bindings go to every
// cluster by Placement; Alice (team-shop) and Bob (team-blog) are Users of the hub's issuer and
// log in with the device flow, which the test drives as a person at a browser would; through
// the hub, Alice deploys to shop on every cluster and is refused in kube-system and in blog;
// Bob is refused in shop; the hub's audit names Alice and each cluster; after `convoy logout`,
// kubectl is refused.
func checkTeamLogin(t *testing.T, env []string, kubectl, dataDir string, clusters []string) {
	t.Helper()
	root := hubtest.RepoRoot(t)
	hubKubeconfig := filepath.Join(dataDir, "kubeconfig")
	for _, team := range []string{"team-shop", "team-blog"} {
		run(t, nil, kubectl, "--kubeconfig", hubKubeconfig, "apply", "-f", filepath.Join(root, "examples/teams", team+".yaml"))
	}
	addUser := func(name, team, password string) {
		cmd := exec.Command(convoyBin, "user", "add", name, "--email", name+"@example.com", "--group", team, "--password-stdin")
		cmd.Env, cmd.Stdin = append(os.Environ(), env...), strings.NewReader(password+"\n")
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "user/"+name+" created") {
			t.Fatalf("convoy user add %s: %v\n%s", name, err, out)
		}
	}
	addUser("alice", "team-shop", "alice-password")
	addUser("bob", "team-blog", "bob-password")

	// Each person has a home of their own: the token cache and login kubeconfig are there.
	ca, err := os.ReadFile(filepath.Join(dataDir, "pki", "ca.crt"))
	hubtest.Must(t, err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	browser := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	login := func(name, password string) []string {
		home := t.TempDir()
		penv := append(append([]string(nil), env...), "HOME="+home)
		cmd := exec.Command(convoyBin, "login")
		cmd.Env = append(os.Environ(), penv...)
		var out, errOut hubtest.SyncBuffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		hubtest.Must(t, cmd.Start())
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		page := regexp.MustCompile(`https://\S+/device\?user_code=[A-Z-]+`)
		var link string
		eventually(t, name+"'s login showing the page to open", 30*time.Second, func() (bool, error) {
			link = page.FindString(errOut.String())
			return link != "", fmt.Errorf("convoy login says %q", errOut.String())
		})
		u, err := url.Parse(link)
		hubtest.Must(t, err)
		resp, err := browser.PostForm(strings.Split(link, "?")[0], url.Values{"user_code": {u.Query().Get("user_code")}, "username": {name}, "password": {password}})
		hubtest.Must(t, err)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s signing in on the issuer's page: %s", name, resp.Status)
		}
		select {
		case err := <-done:
			if err != nil || !strings.Contains(out.String(), "Logged in as "+name+"@example.com") {
				t.Fatalf("convoy login as %s: %v\n%s%s", name, err, out.String(), errOut.String())
			}
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			t.Fatalf("convoy login as %s did not end after the sign-in:\n%s", name, errOut.String())
		}
		return penv
	}
	alice := login("alice", "alice-password")
	bob := login("bob", "bob-password")
	loginKubeconfig := func(penv []string) string {
		for _, e := range penv {
			if home, ok := strings.CutPrefix(e, "HOME="); ok {
				return filepath.Join(home, ".convoy", "login.kubeconfig")
			}
		}
		return ""
	}
	// kubectl through the hub to cluster, as the person (their kubeconfig from convoy login).
	viaHub := func(penv []string, cluster string) func(args ...string) (string, error) {
		path := filepath.Join(t.TempDir(), cluster+".kubeconfig")
		hubtest.Must(t, os.WriteFile(path, []byte(run(t, penv, convoyBin, "cluster", "kubeconfig", cluster, "--via-hub", "--kubeconfig", loginKubeconfig(penv))), 0o600))
		return func(args ...string) (string, error) {
			cmd := exec.Command(kubectl, append([]string{"--kubeconfig", path}, args...)...)
			cmd.Env = append(os.Environ(), penv...)
			out, err := cmd.CombinedOutput()
			return string(out), err
		}
	}
	if out := run(t, alice, kubectl, "--kubeconfig", loginKubeconfig(alice), "auth", "whoami"); !strings.Contains(out, "oidc:alice@example.com") || !strings.Contains(out, "oidc:team-shop") {
		t.Errorf("alice at the hub is:\n%s", out)
	}
	for _, c := range clusters {
		k := viaHub(alice, c)
		// The binding reaches the cluster by Placement; until then she is refused.
		eventually(t, "alice deploying to shop on "+c+" through the hub", 2*time.Minute, func() (bool, error) {
			out, err := k("-n", "shop", "create", "deployment", "cart", "--image", "registry.convoy.local/examples/web:1", "--replicas", "0")
			return err == nil, fmt.Errorf("%v: %s", err, out)
		})
		if out, err := k("-n", "shop", "get", "deployment", "cart", "-o", "name"); err != nil || strings.TrimSpace(out) != "deployment.apps/cart" {
			t.Errorf("alice reading back her deployment on %s: %v %s", c, err, out)
		}
		for _, ns := range []string{"kube-system", "blog"} {
			out, err := k("-n", ns, "create", "deployment", "cart", "--image", "x", "--replicas", "0")
			if err == nil || !strings.Contains(out, `User "oidc:alice@example.com" cannot create resource "deployments"`) {
				t.Errorf("alice deploying to %s on %s: %v %s, want forbidden", ns, c, err, out)
			}
		}
		out, err := viaHub(bob, c)("-n", "shop", "get", "pods")
		if err == nil || !strings.Contains(out, `User "oidc:bob@example.com" cannot list resource "pods"`) {
			t.Errorf("bob reading shop on %s: %v %s, want forbidden", c, err, out)
		}
	}
	audit, _ := os.ReadFile(filepath.Join(dataDir, "logs", "cluster-access.log"))
	for _, c := range clusters {
		want := regexp.MustCompile(`"user":"oidc:alice@example.com".*"cluster":"` + c + `".*"verb":"POST","path":"/apis/apps/v1/namespaces/shop/deployments"`)
		if !want.Match(audit) {
			t.Errorf("the hub's audit lacks alice's deployment on %s", c)
		}
	}

	// After logout, kubectl is refused: there is no token to give.
	if out := run(t, alice, convoyBin, "logout"); !strings.Contains(out, "Logged out of https://127.0.0.1:") {
		t.Errorf("convoy logout: %s", out)
	}
	cmd := exec.Command(kubectl, "--kubeconfig", loginKubeconfig(alice), "auth", "whoami")
	cmd.Env = append(os.Environ(), alice...)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "run `convoy login`") {
		t.Errorf("kubectl after convoy logout: %v %s, want refused", err, out)
	}
}
