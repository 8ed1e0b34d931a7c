package hub

import (
	"context"
	"net/url"
	"path/filepath"
	"strconv"

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
	port, err := kubeproc.FreePort()
	if err != nil {
		return err
	}
	store, err := h.startChild(kubeproc.VictoriaLogs, bin, observe.LogStore{
		DataDir: filepath.Join(h.layout.FleetLogs(), "data"), Port: port, Retention: h.opts.LogsRetention,
		MemoryBytes: 256 << 20, PasswordFile: h.logPasswordFile,
	}.Args())
	if err != nil {
		return err
	}
	storeURL := &url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(port)}
	h.logHealth.Store(&StoreStatus{Address: storeURL.Host, Error: "starting"})
	wctx, stop := context.WithCancel(context.Background())
	h.stopLogWatch = stop
	go h.watchStore(wctx, "log", storeURL, store, &h.logStore, &h.logHealth)
	return nil
}
