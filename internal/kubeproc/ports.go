package kubeproc

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// lowestPort is the bottom of the range FreePort draws from.
const lowestPort = 20000

// FreePort returns a TCP port on 127.0.0.1 that is free now. It draws from below the kernel's
// ephemeral range (net.ipv4.ip_local_port_range), which outgoing connections take their local
// ports from: a port chosen there cannot be taken by some client's connection while the
// process that owns it restarts. It falls back to a kernel-chosen port.
func FreePort() (int, error) {
	if top := ephemeralStart(); top-lowestPort > 1000 {
		for range 200 {
			p := lowestPort + rand.IntN(top-lowestPort)
			if PortFree(p) {
				return p, nil
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ephemeralStart is the first port of the kernel's ephemeral range, or 0 if unknown.
func ephemeralStart() int {
	raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(raw))
	if len(f) != 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[0])
	return n
}

// PortFree reports whether port can be bound on 127.0.0.1 now.
func PortFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}
