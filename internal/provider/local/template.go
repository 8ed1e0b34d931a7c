package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/convoy-dev/convoy/internal/kubeproc"
)

// A datastore template is the SQLite database of a new cluster whose API server has finished
// its bootstrap: the RBAC roles, priority classes, flow schemas and system namespaces every
// cluster of a Kubernetes version starts with, and nothing specific to one cluster. Writing
// those objects takes about a second of a new API server's start; a cluster started on a copy
// of the template skips it, as an API server restarting on its own data does. The hub makes
// one template per version in the background; clusters made before it exists start from an
// empty datastore, which works the same, only slower.

// templateFiles are the files of a SQLite database in WAL mode.
var templateFiles = []string{"state.db", "state.db-wal", "state.db-shm"}

func templateDir(root, version string) string { return filepath.Join(root, version) }

// hasTemplate reports whether a finished template exists for version.
func hasTemplate(root, version string) bool {
	return root != "" && exists(filepath.Join(templateDir(root, version), "state.db"))
}

// EnsureTemplate makes the datastore template for a Kubernetes version in root, unless it
// exists: it runs kine and the API server on a scratch datastore until the API server is
// ready, stops both cleanly and keeps the database. A failure leaves no template behind.
func EnsureTemplate(ctx context.Context, root, binDir, version string, log *slog.Logger) error {
	if hasTemplate(root, version) {
		return nil
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return err
	}
	// A hub killed while making a template leaves its scratch directory; one hub owns root.
	if old, _ := filepath.Glob(filepath.Join(root, ".making-*")); len(old) > 0 {
		for _, o := range old {
			os.RemoveAll(o)
		}
	}
	scratch, err := os.MkdirTemp(root, ".making-"+version+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	start := time.Now()

	bins := binariesFor(binDir, version)
	kineBin, err := (kubeproc.Binaries{Dir: binDir}).Path(kubeproc.Kine)
	if err != nil {
		return err
	}
	apiBin, err := bins.Path(kubeproc.KubeAPIServer)
	if err != nil {
		return err
	}
	pki, err := kubeproc.EnsurePKI(filepath.Join(scratch, "pki"), "convoy-template-ca")
	if err != nil {
		return err
	}
	kinePort, err := kubeproc.FreePort()
	if err != nil {
		return err
	}
	apiPort, err := kubeproc.FreePort()
	if err != nil {
		return err
	}
	db := filepath.Join(scratch, "db")
	if err := os.MkdirAll(db, 0o700); err != nil {
		return err
	}
	kine, err := kubeproc.Start(kubeproc.Spec{
		Name: "template-kine", Path: kineBin, LogPath: filepath.Join(scratch, "kine.log"),
		Args: kubeproc.KineConfig{Endpoint: kubeproc.SQLiteEndpoint(filepath.Join(db, "state.db")), Port: kinePort}.Args(),
	}, log)
	if err != nil {
		return err
	}
	defer kine.Stop(context.Background())
	if err := kubeproc.WaitTCP(ctx, "127.0.0.1:"+strconv.Itoa(kinePort), kine, time.Minute); err != nil {
		return err
	}
	apiserver, err := kubeproc.Start(kubeproc.Spec{
		Name: "template-kube-apiserver", Path: apiBin, LogPath: filepath.Join(scratch, "kube-apiserver.log"),
		Args: kubeproc.APIServerConfig{EtcdServers: []string{"http://127.0.0.1:" + strconv.Itoa(kinePort)}, Port: apiPort, PKI: pki}.Args(),
	}, log)
	if err != nil {
		return err
	}
	defer apiserver.Stop(context.Background())
	cfg, err := kubeproc.RESTConfig(kubeproc.Kubeconfig("template", "https://127.0.0.1:"+strconv.Itoa(apiPort), pki.CA.CertPEM, pki.Admin))
	if err != nil {
		return err
	}
	if err := kubeproc.WaitAPIServer(ctx, cfg, apiserver, 2*time.Minute); err != nil {
		return err
	}
	// Stop the API server, then kine, so that the database is closed and complete.
	apiserver.Stop(ctx)
	kine.Stop(ctx)
	if ctx.Err() != nil {
		return ctx.Err()
	}

	made := filepath.Join(scratch, "template")
	if err := os.MkdirAll(made, 0o700); err != nil {
		return err
	}
	for _, name := range templateFiles {
		if err := copyFile(filepath.Join(db, name), filepath.Join(made, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if err := os.Rename(made, templateDir(root, version)); err != nil && !hasTemplate(root, version) {
		return fmt.Errorf("keep datastore template: %w", err)
	}
	log.Info("datastore template ready", "version", version, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// seedDatastore copies the template for version into a new cluster's db directory, if there
// is a template and the cluster has no datastore yet.
func seedDatastore(root, version string, d dir) error {
	if !hasTemplate(root, version) || exists(filepath.Join(d.db(), "state.db")) {
		return nil
	}
	if err := os.MkdirAll(d.db(), 0o700); err != nil {
		return err
	}
	for _, name := range templateFiles {
		if err := copyFile(filepath.Join(templateDir(root, version), name), filepath.Join(d.db(), name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
