// Command convoy-pause is the sandbox ("pause") process of every pod on a real node: it holds
// the pod's namespaces open, reaps the zombies of a pod that shares its process namespace, and
// does nothing else until it is told to stop. `make` builds it statically, and convoy packs it
// into the pause image that each node's containerd runs.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			return
		}
		for {
			var ws syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}
