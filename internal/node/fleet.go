package node

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// The fleet network: one bridge on the host that every real node of every local cluster is
// joined to, as machines to a datacenter network. The host is the bridge's first address; the
// nodes take the others.
const (
	// Bridge is the fleet bridge's name.
	Bridge = "convoy0"
)

var (
	// FleetNetwork is the fleet's node subnet.
	FleetNetwork = netip.MustParsePrefix("10.77.0.0/16")
	// Gateway is the host's address on it.
	Gateway = netip.MustParseAddr("10.77.0.1")
)

// EnsureFleet makes the fleet bridge on the host if it is missing. It lets the host's loopback
// be reached through it (route_localnet), so that a node can reach its cluster's API server,
// which listens on the host's loopback, through the forward ForwardAPIServer adds.
func EnsureFleet() error {
	if _, err := os.Stat("/sys/class/net/" + Bridge); err != nil {
		steps := [][]string{
			{"link", "add", Bridge, "type", "bridge"},
			{"addr", "add", netip.PrefixFrom(Gateway, FleetNetwork.Bits()).String(), "dev", Bridge},
			{"link", "set", Bridge, "up"},
		}
		for _, args := range steps {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil && !strings.Contains(string(out), "File exists") {
				return fmt.Errorf("fleet bridge: ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
			}
		}
	}
	return os.WriteFile("/proc/sys/net/ipv4/conf/"+Bridge+"/route_localnet", []byte("1"), 0o644)
}

// forwardRule is the iptables rule (nat table, PREROUTING) that takes what a node sends to the
// host's fleet address on port to the API server listening on the host's loopback there.
func forwardRule(port int) []string {
	p := strconv.Itoa(port)
	return []string{"PREROUTING", "-i", Bridge, "-d", Gateway.String(), "-p", "tcp", "--dport", p,
		"-m", "comment", "--comment", "convoy: API server on port " + p,
		"-j", "DNAT", "--to-destination", "127.0.0.1:" + p}
}

// ForwardAPIServer lets the fleet's nodes reach an API server that listens on the host's
// loopback at port, at Gateway:port.
func ForwardAPIServer(port int) error {
	rule := forwardRule(port)
	if exec.Command("iptables", append([]string{"-t", "nat", "-C"}, rule...)...).Run() == nil {
		return nil
	}
	if out, err := exec.Command("iptables", append([]string{"-w", "-t", "nat", "-A"}, rule...)...).CombinedOutput(); err != nil {
		return fmt.Errorf("forward the API server to the fleet network: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// StopForwarding removes what ForwardAPIServer added for port.
func StopForwarding(port int) error {
	rule := forwardRule(port)
	for exec.Command("iptables", append([]string{"-t", "nat", "-C"}, rule...)...).Run() == nil {
		if out, err := exec.Command("iptables", append([]string{"-w", "-t", "nat", "-D"}, rule...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("stop forwarding the API server: %v: %s", err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// RemoveFleetIfUnused deletes the fleet bridge when no node is joined to it any more.
func RemoveFleetIfUnused() error {
	entries, err := os.ReadDir("/sys/class/net/" + Bridge + "/brif")
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil || len(entries) > 0 {
		return err
	}
	if out, err := exec.Command("ip", "link", "delete", Bridge).CombinedOutput(); err != nil {
		return fmt.Errorf("delete the fleet bridge: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
