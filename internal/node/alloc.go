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

func (a Addresses) update(f func(map[string]string) error) error {
	if err := os.MkdirAll(filepath.Dir(a.File), 0o755); err != nil {
		return err
	}
	lock, err := os.OpenFile(a.File+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	m := map[string]string{}
	raw, err := os.ReadFile(a.File)
	switch {
	case err == nil:
		if err := json.Unmarshal(raw, &m); err != nil {
			return fmt.Errorf("read %s: %w", a.File, err)
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
	return kubeproc.WriteFileAtomic(a.File, append(out, '\n'), 0o644)
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
