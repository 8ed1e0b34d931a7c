package node

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"sigs.k8s.io/yaml"
)

func TestAddresses(t *testing.T) {
	root := t.TempDir()
	a := Addresses{File: filepath.Join(root, "addresses.json")}
	dir := func(p string) string {
		d := filepath.Join(root, p)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	first, err := a.Allocate(dir("east/nodes/n1"))
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.MustParseAddr("10.77.0.2"); first != want {
		t.Fatalf("first address = %s, want %s (the lowest above the gateway)", first, want)
	}
	again, _ := a.Allocate(dir("east/nodes/n1"))
	if again != first {
		t.Fatalf("a node's address changed from %s to %s", first, again)
	}
	if got, ok := a.Lookup(filepath.Join(root, "east/nodes/n1")); !ok || got != first {
		t.Fatalf("Lookup = %s, %v; want %s", got, ok, first)
	}
	if got, ok := a.Lookup(filepath.Join(root, "east/nodes/none")); ok {
		t.Fatalf("Lookup of a node without an address = %s", got)
	}
	second, _ := a.Allocate(dir("west/nodes/n1"))
	if second == first {
		t.Fatalf("two clusters' nodes share %s", first)
	}
	if err := a.Release(filepath.Join(root, "east/nodes")); err != nil {
		t.Fatal(err)
	}
	if reused, _ := a.Allocate(dir("north/nodes/n1")); reused != first {
		t.Fatalf("a released address was not reused: got %s, want %s", reused, first)
	}

	// Runtimes of several clusters allocate at once: every node gets its own address.
	var wg sync.WaitGroup
	got := make([]netip.Addr, 20)
	for i := range got {
		wg.Go(func() {
			addr, err := a.Allocate(dir("many/nodes/" + string(rune('a'+i))))
			if err != nil {
				t.Error(err)
			}
			got[i] = addr
		})
	}
	wg.Wait()
	// A node whose directory is gone gives its address back to the next one.
	if err := os.RemoveAll(filepath.Join(root, "west")); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.Allocate(dir("south/nodes/n1")); got != second {
		t.Errorf("the address of a node whose directory is gone was not reused: got %s, want %s", got, second)
	}
	seen := map[netip.Addr]bool{first: true, second: true}
	for _, addr := range got {
		if seen[addr] || !FleetNetwork.Contains(addr) {
			t.Fatalf("address %s given twice or outside %s", addr, FleetNetwork)
		}
		seen[addr] = true
	}
}

func TestNames(t *testing.T) {
	for _, dir := range []string{"/d/us-east/nodes/worker-0", "/a/very/long/data/dir/clusters/a-very-long-cluster-name-indeed/nodes/a-very-long-node-name"} {
		if l := len(Spec{Dir: dir}.HostLink()); l > 15 {
			t.Errorf("host link of %s has %d characters; Linux allows 15", dir, l)
		}
	}
	if (Spec{Dir: "/d/east/nodes/n1"}).NetNS() == (Spec{Dir: "/d/east/nodes/n2"}).NetNS() {
		t.Error("two nodes share a network namespace name")
	}
	if (Spec{Dir: "/one/east/nodes/n1"}).HostLink() == (Spec{Dir: "/two/east/nodes/n1"}).HostLink() {
		t.Error("same-named nodes of two data dirs share a host link")
	}
}

// TestKubeletConfig checks the settings without which two kubelets on one host of this kind
// remove each other's pods or fail to start (../shared/REAL-NODES.md).
func TestKubeletConfig(t *testing.T) {
	s := Spec{Cluster: "east", Name: "n1", Dir: "/data/n1", IP: netip.MustParseAddr("10.77.0.9"), CAFile: "/pki/ca.crt"}
	var cfg map[string]any
	if err := yaml.UnmarshalStrict([]byte(KubeletConfig(s)), &cfg); err != nil {
		t.Fatalf("the kubelet configuration is not YAML: %v", err)
	}
	for key, want := range map[string]any{
		"failCgroupV1": false, "cgroupDriver": "cgroupfs", "oomScoreAdj": float64(0),
		"cgroupRoot": s.CgroupRoot(), "cgroupsPerQOS": true, "podLogsDir": "/data/n1/pods",
		"address": "10.77.0.9", "maxPods": float64(110),
	} {
		if cfg[key] != want {
			t.Errorf("%s = %v, want %v", key, cfg[key], want)
		}
	}
}

func TestShellWords(t *testing.T) {
	got := shellWords(`-A PREROUTING -i convoy0 -d 10.77.0.1/32 -p tcp -m tcp --dport 3000 -m comment --comment "convoy: API server on port 3000" -j DNAT --to-destination 127.0.0.1:3000`)
	want := []string{"-A", "PREROUTING", "-i", "convoy0", "-d", "10.77.0.1/32", "-p", "tcp", "-m", "tcp", "--dport", "3000",
		"-m", "comment", "--comment", "convoy: API server on port 3000", "-j", "DNAT", "--to-destination", "127.0.0.1:3000"}
	if !slices.Equal(got, want) {
		t.Errorf("shellWords:\n got %q\nwant %q", got, want)
	}
}

// TestCachedNetNS reads the pod network namespaces out of libcni's cached results, as
// containerd 1.6 leaves them in /var/lib/cni/results: older libcni records the namespace only
// in the result's interfaces, newer libcni also at the top.
func TestCachedNetNS(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  string
		want []string
	}{
		{"interfaces only", `{"kind":"cniCacheV1","containerId":"abc","ifName":"eth0","networkName":"convoy",
			"result":{"cniVersion":"1.0.0","interfaces":[{"name":"cni0","mac":"aa:bb:cc:dd:ee:ff"},
			{"name":"veth1","mac":"aa:bb:cc:dd:ee:01"},{"name":"eth0","mac":"aa:bb:cc:dd:ee:02","sandbox":"/var/run/netns/cni-1234"}]}}`,
			[]string{"/run/netns/cni-1234"}},
		{"netns and interfaces", `{"kind":"cniCacheV1","netns":"/run/netns/cni-5678",
			"result":{"interfaces":[{"name":"eth0","sandbox":"/run/netns/cni-5678"}]}}`,
			[]string{"/run/netns/cni-5678"}},
		{"a namespace elsewhere is not ours to remove", `{"netns":"/proc/42/ns/net","result":{"interfaces":[{"sandbox":"/run/netns/../../etc/x"}]}}`,
			nil},
		{"not JSON", `garbage`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := cachedNetNS([]byte(tc.raw)); !slices.Equal(got, tc.want) {
				t.Errorf("cachedNetNS = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestPodNetworks: each cluster gets a pod network of its own, keeps it, takes back the one it
// had after the host's file is lost, and is told when another took it meanwhile.
func TestPodNetworks(t *testing.T) {
	root := t.TempDir()
	p := PodNetworks{File: filepath.Join(root, "pod-networks.json")}
	dir := func(name string) string {
		d := filepath.Join(root, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	east, err := p.Allocate(dir("east"), netip.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.MustParsePrefix("10.64.0.0/18"); east != want {
		t.Fatalf("first pod network = %s, want %s", east, want)
	}
	west, _ := p.Allocate(dir("west"), netip.Prefix{})
	if want := netip.MustParsePrefix("10.64.64.0/18"); west != want {
		t.Fatalf("second pod network = %s, want %s", west, want)
	}
	if again, _ := p.Allocate(dir("east"), netip.Prefix{}); again != east {
		t.Fatalf("a cluster's pod network changed from %s to %s", east, again)
	}
	// The host restarted: the file is gone, and the clusters ask for what they had.
	if err := os.Remove(p.File); err != nil {
		t.Fatal(err)
	}
	if got, err := p.Allocate(dir("west"), west); err != nil || got != west {
		t.Fatalf("west asked for %s again: %s, %v", west, got, err)
	}
	if got, _ := p.Allocate(dir("north"), netip.Prefix{}); got != east {
		t.Fatalf("north = %s, want the lowest free one, %s", got, east)
	}
	if _, err := p.Allocate(dir("east"), east); err == nil {
		t.Fatal("east took back the pod network that north holds now")
	}
	// Released, and a cluster whose directory is gone, give theirs back.
	if err := p.Release(filepath.Join(root, "north")); err != nil {
		t.Fatal(err)
	}
	if got, err := p.Allocate(dir("east"), east); err != nil || got != east {
		t.Fatalf("east after north's release: %s, %v", got, err)
	}
	if err := os.RemoveAll(filepath.Join(root, "west")); err != nil {
		t.Fatal(err)
	}
	if got, _ := p.Allocate(dir("south"), netip.Prefix{}); got != west {
		t.Fatalf("south = %s, want west's, whose directory is gone (%s)", got, west)
	}
	// 256 networks in all, then a clear error.
	for i := range 254 {
		if _, err := p.Allocate(dir(fmt.Sprintf("c%03d", i)), netip.Prefix{}); err != nil {
			t.Fatalf("cluster %d: %v", i, err)
		}
	}
	if _, err := p.Allocate(dir("one-too-many"), netip.Prefix{}); err == nil || !strings.Contains(err.Error(), "every pod network") {
		t.Fatalf("the 257th cluster: %v", err)
	}
}
