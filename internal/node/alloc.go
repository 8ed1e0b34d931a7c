package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/convoy-dev/convoy/internal/kubeproc"
)

// Addresses keeps which fleet address each real node has, in one file for the whole host
// (every local cluster's runtime, of every data dir, allocates from it, as they share the
// fleet bridge), under an exclusive lock. A node keeps its address across restarts; Release
// gives it back.
type Addresses struct {
	// File is the JSON file of the allocations: node directory → address.
	File string
}

// HostAddresses are the allocations of this host, in /run: they last as long as the network
// namespaces and the bridge they are for.
var HostAddresses = Addresses{File: "/run/convoy/node-addresses.json"}

// Allocate returns the address of the node whose directory is key (it must exist), giving it
// the lowest free one of the fleet network (above the gateway) the first time.
func (a Addresses) Allocate(key string) (netip.Addr, error) {
	var got netip.Addr
	err := a.update(func(m map[string]string) error {
		if s, ok := m[key]; ok {
			addr, err := netip.ParseAddr(s)
			if err == nil {
				got = addr
				return nil
			}
		}
		// Entries of nodes whose directory is gone (their data dir was removed without a
		// delete, as a test's temporary one is) give their address back. A node's directory
		// exists before it asks for an address.
		for k := range m {
			if _, err := os.Stat(k); errors.Is(err, os.ErrNotExist) {
				delete(m, k)
			}
		}
		used := map[netip.Addr]bool{Gateway: true}
		for _, s := range m {
			if addr, err := netip.ParseAddr(s); err == nil {
				used[addr] = true
			}
		}
		for addr := Gateway.Next(); FleetNetwork.Contains(addr); addr = addr.Next() {
			if !used[addr] && addr != lastAddr(FleetNetwork) {
				m[key], got = addr.String(), addr
				return nil
			}
		}
		return fmt.Errorf("the fleet network %s has no free address", FleetNetwork)
	})
	return got, err
}

// Lookup is the address the node whose directory is key holds, if it holds one.
func (a Addresses) Lookup(key string) (netip.Addr, bool) {
	var got netip.Addr
	_ = a.update(func(m map[string]string) error {
		got, _ = netip.ParseAddr(m[key])
		return nil
	})
	return got, got.IsValid()
}

// Release gives back the addresses of the nodes whose directories are under dir (a cluster's
// nodes directory), or are dir.
func (a Addresses) Release(dir string) error {
	return a.update(func(m map[string]string) error {
		for key := range m {
			if key == dir || strings.HasPrefix(key, strings.TrimSuffix(dir, "/")+"/") {
				delete(m, key)
			}
		}
		return nil
	})
}

func (a Addresses) update(f func(map[string]string) error) error { return updateFile(a.File, f) }

// updateFile changes the JSON map in file with f, under an exclusive lock of the host.
func updateFile(file string, f func(map[string]string) error) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	lock, err := os.OpenFile(file+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	m := map[string]string{}
	raw, err := os.ReadFile(file)
	switch {
	case err == nil:
		if err := json.Unmarshal(raw, &m); err != nil {
			return fmt.Errorf("read %s: %w", file, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	if err := f(m); err != nil {
		return err
	}
	out, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return kubeproc.WriteFileAtomic(file, append(out, '\n'), 0o644)
}

// PodNetworkSpace is where local clusters' pod networks come from: each cluster with real
// nodes takes a /PodNetworkBits of it (a /24 of that per node, 64 nodes), none shared, so that
// the host routes to every pod of every cluster (the API server's pod proxy and webhooks, the
// metrics collector's scrapes), as a cloud's VPC-native networking does.
var PodNetworkSpace = netip.MustParsePrefix("10.64.0.0/10")

// PodNetworkBits is the size of one cluster's pod network.
const PodNetworkBits = 18

// PodNetworks keeps which pod network each local cluster with real nodes has, in one file for
// the whole host (every runtime of every data dir allocates from it), under an exclusive lock.
type PodNetworks struct {
	// File is the JSON file of the allocations: cluster directory → prefix.
	File string
}

// HostPodNetworks are the allocations of this host. They last as long as the clusters, not as
// the network namespaces: on disk, so that after the host restarts no new cluster takes a
// network that a cluster not started again yet still has.
var HostPodNetworks = PodNetworks{File: "/var/lib/convoy/pod-networks.json"}

// Allocate returns the pod network of the cluster whose directory is key (it must exist): the
// one it holds; else want, the one it had before (this file is lost when the host restarts),
// if no other cluster holds it; else the lowest free one. A cluster whose former network
// another holds now gets an error: its nodes' ranges cannot change.
func (p PodNetworks) Allocate(key string, want netip.Prefix) (netip.Prefix, error) {
	var got netip.Prefix
	err := updateFile(p.File, func(m map[string]string) error {
		if s, ok := m[key]; ok {
			if pfx, err := netip.ParsePrefix(s); err == nil {
				got = pfx
				return nil
			}
		}
		for k := range m {
			if _, err := os.Stat(k); errors.Is(err, os.ErrNotExist) {
				delete(m, k)
			}
		}
		used := map[netip.Prefix]string{}
		for k, s := range m {
			if pfx, err := netip.ParsePrefix(s); err == nil {
				used[pfx] = k
			}
		}
		if want.IsValid() {
			if other, taken := used[want]; taken {
				return fmt.Errorf("the cluster's pod network %s is now the one of the cluster in %s; delete one of the two clusters", want, other)
			}
			m[key], got = want.String(), want
			return nil
		}
		step := uint32(1) << (32 - PodNetworkBits)
		base := PodNetworkSpace.Masked().Addr().As4()
		first := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
		for i := range uint32(1) << (PodNetworkBits - PodNetworkSpace.Bits()) {
			a := first + i*step
			pfx := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), PodNetworkBits)
			if _, taken := used[pfx]; !taken {
				m[key], got = pfx.String(), pfx
				return nil
			}
		}
		return fmt.Errorf("every pod network of %s is taken (%d clusters with real nodes on this host)", PodNetworkSpace, len(used))
	})
	return got, err
}

// Release gives back the pod network of the cluster whose directory is key.
func (p PodNetworks) Release(key string) error {
	return updateFile(p.File, func(m map[string]string) error {
		delete(m, key)
		return nil
	})
}

// lastAddr is a prefix's broadcast address.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	bits := p.Bits()
	for i := range 4 {
		for b := range 8 {
			if i*8+b >= bits {
				a[i] |= 1 << (7 - b)
			}
		}
	}
	return netip.AddrFrom4(a)
}
