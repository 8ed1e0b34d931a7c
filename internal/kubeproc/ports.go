package kubeproc

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// lowestPort is the bottom of the range FreePort draws from.
const lowestPort = 20000

// FreePort returns a TCP port on 127.0.0.1 that is free now. It draws from below the kernel's
// ephemeral range (net.ipv4.ip_local_port_range), which outgoing connections take their local
// ports from: a port chosen there cannot be taken by some client's connection while the
// process that owns it restarts. Nor by another Convoy process: the port stays reserved for the
// calling process while it lives (see reservePort). It falls back to a kernel-chosen port.
func FreePort() (int, error) {
	if top := ephemeralStart(); top-lowestPort > 1000 {
		for range 200 {
			p := lowestPort + rand.IntN(top-lowestPort)
			if PortFree(p) && reservePort(p) {
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

// portsDir holds one file per port a Convoy process chose, naming that process. A child that
// restarts on its port (an API server after a crash, a hub restarted by a test) leaves the
// port free for a moment, and another Convoy process on the machine (tests run many at once)
// must not choose it then.
var portsDir = filepath.Join(os.TempDir(), "convoy-ports")

// reservePort records port as this process's, unless a live process holds it already. A
// reservation whose process is gone is taken over.
func reservePort(port int) bool {
	if err := os.MkdirAll(portsDir, 0o777); err != nil {
		return true // no place to coordinate: the port is free, which is all FreePort promised
	}
	path := filepath.Join(portsDir, strconv.Itoa(port))
	for range 2 {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			_, werr := f.WriteString(strconv.Itoa(os.Getpid()))
			return errors.Join(werr, f.Close()) == nil
		}
		if !errors.Is(err, os.ErrExist) {
			return true
		}
		raw, _ := os.ReadFile(path)
		pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil {
			// Being written this very moment, or left half-written long ago.
			if fi, serr := os.Stat(path); serr == nil && time.Since(fi.ModTime()) < time.Minute {
				return false
			}
		} else if processAlive(pid) {
			return false // held, by another process or by this one for another use
		}
		_ = os.Remove(path) // its process is gone
	}
	return false
}

// processAlive reports whether a process with that pid exists.
func processAlive(pid int) bool {
	return pid > 0 && syscall.Kill(pid, 0) != syscall.ESRCH
}
