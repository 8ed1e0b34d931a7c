package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/convoy-dev/convoy/internal/kubeproc"
)

// Layout is where the hub keeps its files inside the data dir.
type Layout struct{ Dir string }

// Lock is the file whose flock marks the data dir as in use.
func (l Layout) Lock() string { return filepath.Join(l.Dir, "hub.lock") }

// State is the file that remembers choices across restarts, such as the API server port.
func (l Layout) State() string { return filepath.Join(l.Dir, "hub.json") }

// Kubeconfig is the admin kubeconfig for users, kubectl and helm.
func (l Layout) Kubeconfig() string { return filepath.Join(l.Dir, "kubeconfig") }

// PKI holds the hub's CA, certificates and service-account keys.
func (l Layout) PKI() string { return filepath.Join(l.Dir, "pki") }

// DB holds the default SQLite datastore.
func (l Layout) DB() string { return filepath.Join(l.Dir, "db") }

// Logs holds one log file per child process.
func (l Layout) Logs() string { return filepath.Join(l.Dir, "logs") }

// Run holds the children's pid files.
func (l Layout) Run() string { return filepath.Join(l.Dir, "run") }

// Internal holds kubeconfigs of the hub's own components.
func (l Layout) Internal() string { return filepath.Join(l.Dir, "internal") }

// DefaultDataDir is $CONVOY_DATA_DIR, or ~/.convoy.
func DefaultDataDir() string {
	if d := os.Getenv("CONVOY_DATA_DIR"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".convoy"
	}
	return filepath.Join(home, ".convoy")
}

// lockDataDir takes an exclusive flock on the data dir's lock file and writes our pid in it.
// The kernel drops the lock when this process dies, however it dies, so a hub killed with
// SIGKILL never leaves the data dir locked.
func lockDataDir(l Layout) (release func(), err error) {
	f, err := os.OpenFile(l.Lock(), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		raw, _ := os.ReadFile(l.Lock())
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := strings.TrimSpace(string(raw))
			if _, perr := strconv.Atoi(holder); perr != nil {
				holder = "unknown"
			}
			return nil, fmt.Errorf("data dir %s is in use by a running hub (pid %s); stop that hub first, or pass --data-dir with another directory", l.Dir, holder)
		}
		return nil, fmt.Errorf("lock data dir %s: %w", l.Dir, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() {
		_ = f.Truncate(0)
		_ = f.Close() // closing the descriptor drops the flock
	}, nil
}

// state is what the hub remembers in hub.json across restarts.
type state struct {
	// APIServerPort is kept so that kubeconfigs handed out earlier stay valid.
	APIServerPort int `json:"apiserverPort"`
}

func loadState(l Layout) (state, error) {
	var s state
	raw, err := os.ReadFile(l.State())
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read hub state: %w", err)
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return s, fmt.Errorf("read hub state %s: %w; remove the file to start with fresh ports", l.State(), err)
	}
	return s, nil
}

func saveState(l Layout, s state) error {
	raw, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return kubeproc.WriteFileAtomic(l.State(), append(raw, '\n'), 0o644)
}
