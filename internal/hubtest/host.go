package hubtest

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/convoy-dev/convoy/internal/edgepool"
)

// RealNodes takes the host-wide lock of tests that run real nodes, until the test ends, so that
// what one of them finds on the host (HostState) is its own: packages' tests run side by side.
// It fails the test when this machine cannot run real nodes.
func RealNodes(t testing.TB, missing func(binDir string) error) {
	t.Helper()
	if err := missing(BinDir(t)); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("/run/convoy", 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile("/run/convoy/tests.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
}

// HostState lists what real nodes make on the host, all of it and not only what is named after
// Convoy: network namespaces, links, static routes, mounts, iptables rules, files under /var/lib/cni, cgroups
// under /convoy, and the processes of nodes and pods (by program name: API servers' flags
// mention the kubelet). Compare the lists before and after with Difference.
func HostState(t testing.TB) map[string][]string {
	t.Helper()
	lines := func(name string, args ...string) []string {
		out, err := exec.Command(name, args...).Output()
		if err != nil {
			t.Fatalf("%s %v: %v", name, args, err)
		}
		var keep []string
		for l := range strings.SplitSeq(string(out), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				keep = append(keep, l)
			}
		}
		return keep
	}
	// Rules and chains of their own, not the tables and built-in chains the kernel keeps once
	// a table was used.
	var rules []string
	builtin := []string{":INPUT ", ":OUTPUT ", ":FORWARD ", ":PREROUTING ", ":POSTROUTING "}
	for _, l := range lines("iptables-save") {
		if strings.HasPrefix(l, "#") || strings.HasPrefix(l, "*") || l == "COMMIT" ||
			slices.ContainsFunc(builtin, func(b string) bool { return strings.HasPrefix(l, b) }) {
			continue
		}
		rules = append(rules, strings.Split(l, " [")[0]) // chains without their counters
	}
	return map[string][]string{
		// /run/netns exists once the host made its first named network namespace.
		"network namespaces": lines("sh", "-c", "ls -A /run/netns 2>/dev/null; true"),
		"links":              lines("sh", "-c", "ip -o link show | cut -d: -f2"),
		"routes":             lines("ip", "-4", "route", "show", "proto", "static"),
		// Less /run/netns itself, which iproute2 mounts (shared) at the host's first named
		// network namespace and keeps; the namespaces' own mounts are in it.
		"mounts":         lines("sh", "-c", "cut -d' ' -f5 /proc/self/mountinfo | grep -vx /run/netns; true"),
		"iptables rules": rules,
		"CNI files":      lines("sh", "-c", "find /var/lib/cni -type f 2>/dev/null; true"),
		"cgroups":        lines("sh", "-c", "find /sys/fs/cgroup -maxdepth 3 -path '*/convoy*' -type d"),
		"processes":      lines("sh", "-c", "ps -eo pid=,comm= | grep -E ' (containerd|containerd-shim|kubelet|kube-proxy|convoy-pause|convoy-volume|coredns|local-path-prov|echo|web)$'; true"),
	}
}

// Difference is what a has that b has not.
func Difference(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// RequireHAProxy fails the test when this machine lacks HAProxy, the edge's data plane (`make
// deps` installs it).
func RequireHAProxy(t testing.TB) {
	t.Helper()
	if _, err := edgepool.Binary(); err != nil {
		t.Fatal(err)
	}
}
