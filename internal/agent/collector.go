package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/convoy-dev/convoy/internal/kubeproc"
	"github.com/convoy-dev/convoy/internal/observe"
	"github.com/convoy-dev/convoy/internal/observe/kubestate"
)

// Collector runs the member's metrics collector (vmagent, observe.Collector) next to the agent:
// it scrapes the member through its API server, and the workload-state exporter the agent
// serves on loopback for it (observe/kubestate), and sends the samples to the hub's fleet store
// with the agent's identity. It stops with the agent, and with the agent's process (its
// parent's death kills it).
type Collector struct {
	// Binary is vmagent's executable.
	Binary string
	// Member is the member's API server with the agent's credentials there.
	Member *rest.Config
	// Dir is the collector's directory: its configuration, the credentials it reads, its
	// buffer and its log.
	Dir string
	// BufferBytes bounds what it keeps while the hub is away (observe.DefaultBufferBytes
	// when zero).
	BufferBytes int64
	// Pods are the pods that ask to be scraped that it reaches (observe.PodReach).
	Pods observe.PodReach
}

// runCollector writes the collector's configuration and credentials, keeps the hub token's
// file current, and runs vmagent until ctx ends.
func (a *Agent) runCollector(ctx context.Context, c Collector) error {
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return fmt.Errorf("collector dir: %w", err)
	}
	write := func(name string, data []byte) (string, error) {
		path := filepath.Join(c.Dir, name)
		if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
			return path, nil
		}
		return path, kubeproc.WriteFileAtomic(path, data, 0o600)
	}
	target := observe.MemberTarget{APIServer: c.Member.Host, Pods: c.Pods}
	files := []struct {
		data []byte
		file string
		name string
		into *string
	}{
		{c.Member.CAData, c.Member.CAFile, "member-ca.crt", &target.CAFile},
		{c.Member.CertData, c.Member.CertFile, "member.crt", &target.CertFile},
		{c.Member.KeyData, c.Member.KeyFile, "member.key", &target.KeyFile},
		{[]byte(c.Member.BearerToken), c.Member.BearerTokenFile, "member-token", &target.BearerTokenFile},
	}
	for _, f := range files {
		switch {
		case f.file != "":
			*f.into = f.file
		case len(f.data) > 0:
			path, err := write(f.name, f.data)
			if err != nil {
				return err
			}
			*f.into = path
		}
	}
	// The workload-state exporter, on loopback, for the collector only.
	cs, err := kubernetes.NewForConfig(c.Member)
	if err != nil {
		return fmt.Errorf("member client for the workload-state exporter: %w", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("workload-state exporter: %w", err)
	}
	exported := make(chan struct{})
	defer func() { <-exported }()
	ectx, stopExporter := context.WithCancel(ctx)
	defer stopExporter() // before the wait above
	go func() {
		defer close(exported)
		if err := kubestate.NewExporter(cs).Serve(ectx, l); err != nil {
			a.log.Error("the workload-state exporter stopped", "err", err)
		}
	}()
	target.KubeState = l.Addr().String()
	scrape, err := observe.MemberScrapeConfig(target)
	if err != nil {
		return err
	}
	scrapeFile, err := write("scrape.yaml", scrape)
	if err != nil {
		return err
	}
	hubCA, err := write("hub-ca.crt", a.opts.HubCA)
	if err != nil {
		return err
	}
	tokenFile := filepath.Join(c.Dir, "hub-token")
	syncToken := func() error {
		t := a.id.token()
		if t == "" {
			return nil
		}
		_, err := write("hub-token", []byte(t))
		return err
	}
	if err := syncToken(); err != nil {
		return err
	}
	remote, err := observe.RemoteWriteURL(a.opts.HubURL)
	if err != nil {
		return err
	}
	// A unix socket's path is at most 107 bytes; a deep state dir gets one in the temporary
	// directory instead, named after it (the socket is only vmagent's own API, which no one
	// needs).
	socket := filepath.Join(c.Dir, "vmagent.sock")
	if len(socket) > 100 {
		sum := sha256.Sum256([]byte(c.Dir))
		socket = filepath.Join(os.TempDir(), "convoy-vmagent-"+hex.EncodeToString(sum[:8])+".sock")
	}
	_ = os.Remove(socket) // left by a collector that was killed
	p, err := kubeproc.Start(kubeproc.Spec{
		Name: "vmagent",
		Path: c.Binary,
		Args: observe.Collector{Dir: c.Dir, Socket: socket, RemoteWriteURL: remote, HubCAFile: hubCA, HubTokenFile: tokenFile,
			BufferBytes: c.BufferBytes, ScrapeConfig: scrapeFile}.Args(),
		LogPath: filepath.Join(c.Dir, "vmagent.log"),
	}, a.log)
	if err != nil {
		return fmt.Errorf("start the metrics collector: %w", err)
	}
	a.log.Info("metrics collector started", "remote", remote)
	defer func() {
		p.Stop(context.Background())
		_ = os.Remove(socket)
	}()
	// The inventory reports its version while it runs.
	if v, err := collectorVersion(c.Binary); err != nil {
		a.log.Warn("the inventory leaves out the metrics collector's version", "err", err)
	} else {
		a.collectorVersion.Store(&v)
		defer a.collectorVersion.Store(nil)
	}
	// The agent renews its token well before it expires; the collector reads the file again.
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := syncToken(); err != nil {
				a.log.Warn("cannot update the metrics collector's hub token", "err", err)
			}
		}
	}
}

// victoriaMetrics is the module vmagent is built from, whose version is the collector's.
const victoriaMetrics = "github.com/VictoriaMetrics/VictoriaMetrics"

// collectorVersion is the version of the VictoriaMetrics module the collector's executable was
// built from, as its Go build information says (hack/observe/go.mod pins it).
func collectorVersion(binary string) (string, error) {
	bi, err := buildinfo.ReadFile(binary)
	if err != nil {
		return "", fmt.Errorf("read the build information of %s: %w", binary, err)
	}
	if v := moduleVersion(bi, victoriaMetrics); v != "" {
		return v, nil
	}
	return "", fmt.Errorf("%s was not built from a released %s", binary, victoriaMetrics)
}

// moduleVersion is the version of module path in bi, the main module or a dependency, or "".
func moduleVersion(bi *debug.BuildInfo, path string) string {
	mods := append([]*debug.Module{&bi.Main}, bi.Deps...)
	for _, m := range mods {
		if m == nil || m.Path != path {
			continue
		}
		if m.Replace != nil {
			m = m.Replace
		}
		if m.Version == "(devel)" {
			return ""
		}
		return m.Version
	}
	return ""
}
