package hub

import (
	"path/filepath"

	"github.com/convoy-dev/convoy/internal/kubeproc"
	"github.com/convoy-dev/convoy/internal/observe"
)

// prepareLogsAuth makes (once) the password that the log store asks of every request, which
// only the hub process holds.
func (h *Hub) prepareLogsAuth() error {
	if h.opts.LogsRetention < 0 {
		return nil
	}
	var err error
	h.logPasswordFile, h.logAuth, err = storePassword(h.layout.FleetLogs())
	return err
}

// startLogStore runs the fleet log store (VictoriaLogs, a supervised child, its data in the
// data dir, on 127.0.0.1 behind a password that only the hub holds), as startMetricsStore
// runs the metrics store: a store that does not come up stops nothing else, and /status shows
// it (logStore).
func (h *Hub) startLogStore(bin string) error {
	if h.opts.LogsRetention < 0 {
		return nil
	}
	stop, err := h.startStore("log", kubeproc.VictoriaLogs, bin, func(port int) []string {
		return observe.LogStore{
			DataDir: filepath.Join(h.layout.FleetLogs(), "data"), Port: port, Retention: h.opts.LogsRetention,
			MemoryBytes: 256 << 20, PasswordFile: h.logPasswordFile,
		}.Args()
	}, &h.logStore, &h.logHealth)
	h.stopLogWatch = stop
	return err
}
