package node

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/convoy-dev/convoy/internal/kubeproc"
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
	Gateway = netip.MustParseAddr(kubeproc.FleetGateway)
)

// ensureFleet makes the fleet bridge on the host, with each of its parts checked every time (a
// bridge left half made is completed). It lets the host's loopback be reached through it
// (route_localnet), so that a node can reach its cluster's API server, which listens on the
// host's loopback, through a forward (see Forward), and only through one: the filter rules below
// drop what arrives from the bridge for loopback without a forward's DNAT (the host's other
// loopback services, such as each cluster's kine, stay out of the pods' reach), and accept what
// crosses the bridge between nodes on hosts whose FORWARD policy drops.
func ensureFleet() error {
	if _, err := os.Stat("/sys/class/net/" + Bridge); err != nil {
		if out, err := exec.Command("ip", "link", "add", Bridge, "type", "bridge").CombinedOutput(); err != nil && !strings.Contains(string(out), "File exists") {
			return fmt.Errorf("fleet bridge: %v: %s", err, strings.TrimSpace(string(out)))
		}
	}
	addr := netip.PrefixFrom(Gateway, FleetNetwork.Bits()).String()
	if out, err := exec.Command("ip", "-o", "addr", "show", "dev", Bridge).Output(); err != nil || !strings.Contains(string(out), " "+addr+" ") {
		if out, err := exec.Command("ip", "addr", "replace", addr, "dev", Bridge).CombinedOutput(); err != nil {
			return fmt.Errorf("fleet bridge address: %v: %s", err, strings.TrimSpace(string(out)))
		}
	}
	if out, err := exec.Command("ip", "link", "set", Bridge, "up").CombinedOutput(); err != nil {
		return fmt.Errorf("fleet bridge up: %v: %s", err, strings.TrimSpace(string(out)))
	}
	for _, rule := range guardRules() {
		if err := ensureRule("filter", rule); err != nil {
			return err
		}
	}
	return os.WriteFile("/proc/sys/net/ipv4/conf/"+Bridge+"/route_localnet", []byte("1"), 0o644)
}

// guardRules are the filter rules that go with the bridge (see ensureFleet), chain first.
func guardRules() [][]string {
	return [][]string{
		{"INPUT", "-i", Bridge, "-d", "127.0.0.0/8", "-m", "conntrack", "!", "--ctstate", "DNAT",
			"-m", "comment", "--comment", "convoy: only forwards reach loopback from the fleet", "-j", "DROP"},
		{"FORWARD", "-i", Bridge, "-o", Bridge,
			"-m", "comment", "--comment", "convoy: nodes reach each other", "-j", "ACCEPT"},
	}
}

// ensureRule inserts rule (chain first) at the top of its chain in table, unless it is there.
func ensureRule(table string, rule []string) error {
	if exec.Command("iptables", append([]string{"-w", "-t", table, "-C"}, rule...)...).Run() == nil {
		return nil
	}
	if out, err := exec.Command("iptables", append([]string{"-w", "-t", table, "-I"}, rule...)...).CombinedOutput(); err != nil {
		return fmt.Errorf("iptables -t %s -I %s: %v: %s", table, strings.Join(rule, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// attach joins a node's host link to the fleet bridge, making the bridge and the node's
// forwards if they are missing: together, so that a bridge with a node always has its forwards.
func attach(link string, forwards map[int]string) error {
	return withFleetLock(func() error {
		if err := ensureFleet(); err != nil {
			return err
		}
		for port, what := range forwards {
			if err := Forward(port, what); err != nil {
				return err
			}
		}
		if out, err := exec.Command("ip", "link", "set", link, "master", Bridge, "up").CombinedOutput(); err != nil {
			return fmt.Errorf("join %s to the fleet bridge: %v: %s", link, err, strings.TrimSpace(string(out)))
		}
		return nil
	})
}

// withFleetLock runs f under a host-wide lock, so that no runtime removes the fleet bridge (no
// node is joined to it) while another one is making it or joining a node to it.
func withFleetLock(f func() error) error {
	if err := os.MkdirAll("/run/convoy", 0o755); err != nil {
		return err
	}
	lock, err := os.OpenFile("/run/convoy/fleet.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	return f()
}

// forwardRule is the iptables rule (nat table, PREROUTING) that takes what a node sends to the
// host's fleet address on port to what listens on the host's loopback there.
func forwardRule(port int, what string) []string {
	p := strconv.Itoa(port)
	return []string{"PREROUTING", "-i", Bridge, "-d", Gateway.String(), "-p", "tcp", "--dport", p,
		"-m", "comment", "--comment", forwardComment(port, what),
		"-j", "DNAT", "--to-destination", "127.0.0.1:" + p}
}

func forwardComment(port int, what string) string {
	return "convoy: " + what + " on port " + strconv.Itoa(port)
}

// Forward lets the fleet's nodes reach what listens on the host's loopback at port (an API
// server, the hub, the fleet registry), at Gateway:port. what names it, and its owner, in the
// rule's comment: StopForwarding removes that rule and no other.
func Forward(port int, what string) error {
	rule := forwardRule(port, what)
	if exec.Command("iptables", append([]string{"-w", "-t", "nat", "-C"}, rule...)...).Run() == nil {
		return nil
	}
	if out, err := exec.Command("iptables", append([]string{"-w", "-t", "nat", "-A"}, rule...)...).CombinedOutput(); err != nil {
		return fmt.Errorf("forward %s to the fleet network: %v: %s", what, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// StopForwarding removes the forward that Forward(port, what) added, under the fleet lock.
func StopForwarding(port int, what string) error {
	return withFleetLock(func() error {
		return removeRules("nat", "PREROUTING", func(r []string) bool { return slices.Contains(r, forwardComment(port, what)) })
	})
}

// removeRules deletes the fleet's rules (those of the bridge with a "convoy:" comment) of one
// chain of table that match.
func removeRules(table, chain string, match func(rule []string) bool) error {
	out, err := exec.Command("iptables", "-w", "-t", table, "-S", chain).Output()
	if err != nil {
		return fmt.Errorf("list the fleet's rules in %s %s: %w", table, chain, err)
	}
	var errs []error
	for line := range strings.SplitSeq(string(out), "\n") {
		rule := shellWords(line)
		if len(rule) < 2 || rule[0] != "-A" || !slices.Contains(rule, Bridge) ||
			!slices.ContainsFunc(rule, func(w string) bool { return strings.HasPrefix(w, "convoy: ") }) || !match(rule[1:]) {
			continue
		}
		if out, err := exec.Command("iptables", append([]string{"-w", "-t", table, "-D"}, rule[1:]...)...).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("remove the rule %q: %v: %s", line, err, strings.TrimSpace(string(out))))
		}
	}
	return errors.Join(errs...)
}

// shellWords splits a line of `iptables -S` into its words; a comment is double-quoted.
func shellWords(line string) []string {
	var words []string
	var cur strings.Builder
	quoted, in := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\\' && quoted && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case c == '"':
			quoted, in = !quoted, true
		case c == ' ' && !quoted:
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}

// RemoveFleetIfUnused deletes the fleet bridge, and every forward to it, when no node is joined
// to it any more.
func RemoveFleetIfUnused() error { return withFleetLock(removeFleetIfUnused) }

func removeFleetIfUnused() error {
	entries, err := os.ReadDir("/sys/class/net/" + Bridge + "/brif")
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil || len(entries) > 0 {
		return err
	}
	all := func([]string) bool { return true }
	if err := errors.Join(removeRules("nat", "PREROUTING", all), removeRules("filter", "INPUT", all), removeRules("filter", "FORWARD", all)); err != nil {
		return err
	}
	if out, err := exec.Command("ip", "link", "delete", Bridge).CombinedOutput(); err != nil {
		return fmt.Errorf("delete the fleet bridge: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
