// Package edgepool runs one HAProxy instance of an edge pool (see internal/edge): HAProxy in
// master-worker mode, supervised and restarted like every other child (kubeproc), configured
// from an edge.Pool. Update applies a new pool: through the Runtime API when only servers
// changed, with no reload; otherwise by a hitless reload of a configuration that `haproxy -c`
// accepted first, with the servers' runtime state carried over in the server-state file. A
// configuration HAProxy refuses is never loaded, and the running one stays.
//
// The hub's pool supervisor and `convoy edge` use it.
package edgepool

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/convoy-dev/convoy/internal/edge"
	"github.com/convoy-dev/convoy/internal/kubeproc"
)

// Config is where an instance lives and what it runs.
type Config struct {
	// Name names the instance in logs and process listings, for example "shop-edge-0".
	Name string
	// Dir holds its configuration, sockets, state file and log.
	Dir string
	// Binary is haproxy; empty means the one on PATH.
	Binary string
	// Detach lets the instance outlive this process (a hub that stops or crashes), and Start
	// takes over the one an earlier process left in Dir, instead of starting another.
	Detach bool
	// Bind, Metrics and CheckInterval are edge.Options'.
	Bind          string
	Metrics       string
	CheckInterval time.Duration
}

// Instance is one running HAProxy of a pool.
type Instance struct {
	cfg  Config
	bin  string
	log  *slog.Logger
	proc *kubeproc.Process

	mu    sync.Mutex // one Update at a time
	pool  edge.Pool  // what HAProxy serves
	slots edge.Slots // its servers' slots
	text  string     // the configuration HAProxy runs
	// unsure is set when Runtime API commands may have been applied in part: HAProxy's servers
	// are then not known to be slots, and the next Update reloads from the configuration.
	unsure bool
}

// Result says how an Update was applied.
type Result struct {
	// Commands is how many Runtime API commands it took; Reloaded says it took a reload.
	Commands int
	Reloaded bool
}

// ErrRefused wraps HAProxy's answer to a configuration it does not accept.
var ErrRefused = errors.New("haproxy refused the configuration")

func (c Config) options() edge.Options {
	return edge.Options{Bind: c.Bind, Socket: c.socket(), StateFile: filepath.Join(c.Dir, "server-state"),
		Metrics: c.Metrics, CheckInterval: c.CheckInterval}
}
func (c Config) socket() string       { return filepath.Join(c.Dir, "admin.sock") }
func (c Config) masterSocket() string { return filepath.Join(c.Dir, "master.sock") }
func (c Config) configPath() string   { return filepath.Join(c.Dir, "haproxy.cfg") }

// Binary is the haproxy on PATH, else Debian's in /usr/sbin, which a user's PATH may lack.
func Binary() (string, error) {
	if bin, err := exec.LookPath("haproxy"); err == nil {
		return bin, nil
	}
	if _, err := os.Stat("/usr/sbin/haproxy"); err != nil {
		return "", errors.New("the edge needs haproxy: install it with `make deps` or `apt-get install haproxy`")
	}
	return "/usr/sbin/haproxy", nil
}

// Start writes the pool's configuration, has HAProxy check it, and starts HAProxy on it; it
// returns once the Runtime API answers.
func Start(ctx context.Context, cfg Config, p edge.Pool, log *slog.Logger) (*Instance, error) {
	bin := cfg.Binary
	if bin == "" {
		var err error
		if bin, err = Binary(); err != nil {
			return nil, err
		}
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	i := &Instance{cfg: cfg, bin: bin, log: log.With("pool", p.Name, "instance", cfg.Name)}
	spec := kubeproc.Spec{
		Name: "haproxy-" + cfg.Name, Path: bin,
		// -W: master-worker; -S: the master's CLI, for reloads.
		Args:    []string{"-W", "-S", cfg.masterSocket(), "-f", cfg.configPath()},
		LogPath: filepath.Join(cfg.Dir, "haproxy.log"),
		PIDPath: filepath.Join(cfg.Dir, "haproxy.pid"),
		Detach:  cfg.Detach,
	}
	if proc, ok := kubeproc.Adopt(spec, i.log); ok {
		// It serves what the file says; what its slots hold is not known: the first Update
		// reloads, hitless, onto p. Its ports are taken to be p's (they are its own).
		text, _ := os.ReadFile(cfg.configPath())
		i.proc, i.pool, i.text, i.unsure = proc, p, string(text), true
		if err := i.waitRuntime(ctx, 10*time.Second); err == nil {
			if _, err := i.Update(ctx, p); err == nil {
				return i, nil
			}
		}
		// Not answering, or not taking p: start afresh.
		i.log.Warn("the HAProxy instance left by an earlier run does not take the pool; starting another")
		proc.Stop(ctx)
		i = &Instance{cfg: cfg, bin: bin, log: i.log}
	}
	slots, _, _ := edge.Assign(nil, p)
	text := edge.Render(p, slots, cfg.options())
	if err := i.check(ctx, text, p); err != nil {
		return nil, err
	}
	if err := kubeproc.WriteFileAtomic(cfg.configPath(), []byte(text), 0o600); err != nil {
		return nil, err
	}
	// A state file left by an earlier run is older than this configuration.
	if err := os.Remove(cfg.options().StateFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	proc, err := kubeproc.Start(spec, i.log)
	if err != nil {
		return nil, err
	}
	i.proc, i.pool, i.slots, i.text = proc, p, slots, text
	if err := i.waitRuntime(ctx, 30*time.Second); err != nil {
		proc.Stop(context.Background())
		return nil, err
	}
	return i, nil
}

// Update makes the instance serve p: through the Runtime API when only servers changed within
// their slots, else by a reload of a configuration that HAProxy checked first. The
// configuration file always holds what HAProxy runs, or would run after a restart: one that
// passed the check.
func (i *Instance) Update(ctx context.Context, p edge.Pool) (Result, error) {
	if err := p.Validate(); err != nil {
		return Result{}, err
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	next, cmds, reload := edge.Assign(i.slots, p)
	// Anything but the servers changed (a listener, a match, a limit, a check) changes the
	// configuration beyond the slots: a reload.
	if !reload && edge.SameShape(i.pool, p) && !i.unsure {
		if len(cmds) > 0 {
			if _, err := i.runtime(ctx, cmds...); err != nil {
				i.unsure = true
				return Result{}, err
			}
		}
		// HAProxy runs it; the file follows, for a restart. Only server addresses and
		// weights differ from the checked file.
		text := edge.Render(p, next, i.cfg.options())
		if err := kubeproc.WriteFileAtomic(i.cfg.configPath(), []byte(text), 0o600); err != nil {
			return Result{}, err
		}
		i.pool, i.slots, i.text = p, next, text
		return Result{Commands: len(cmds)}, nil
	}
	text := edge.Render(p, next, i.cfg.options())
	if err := i.check(ctx, text, p); err != nil {
		return Result{}, err
	}
	if err := i.reload(ctx, text, next); err != nil {
		return Result{}, err
	}
	i.pool, i.slots, i.text, i.unsure = p, next, text, false
	return Result{Reloaded: true}, nil
}

// Stop stops HAProxy: its workers close their listeners and end.
func (i *Instance) Stop(ctx context.Context) { i.proc.Stop(ctx) }

// Detach leaves a detached instance (Config.Detach) running for a later Start to take over,
// and stops supervising it.
func (i *Instance) Detach() { i.proc.Detach() }

// StopAll stops the instances that supervisors on root left running: every root/POOL/INDEX
// that records a running HAProxy (kubeproc's pid file, checked to be that very process).
func StopAll(root string, log *slog.Logger) error {
	pools, err := filepath.Glob(filepath.Join(root, "*"))
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range pools {
		errs = append(errs, StopPool(p, log))
	}
	return errors.Join(errs...)
}

// StopPool stops the instances of one pool left running in poolDir (POOL/INDEX).
func StopPool(poolDir string, log *slog.Logger) error {
	dirs, err := filepath.Glob(filepath.Join(poolDir, "*"))
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range dirs {
		if _, err := kubeproc.ReapStale(d, log); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Process is the supervised HAProxy master, for status reports.
func (i *Instance) Process() *kubeproc.Process { return i.proc }

// check has HAProxy check a configuration, in a file of its own, and makes sure the ports of
// p that this instance does not serve yet are free: `haproxy -c` binds nothing, and a reload
// onto a port another program holds would fail in the new worker.
func (i *Instance) check(ctx context.Context, text string, p edge.Pool) error {
	for _, l := range p.Listeners {
		if i.proc != nil && slices.ContainsFunc(i.pool.Listeners, func(o edge.Listener) bool { return o.Port == l.Port }) {
			continue
		}
		ip, err := netip.ParseAddr(i.cfg.Bind)
		if err != nil {
			return fmt.Errorf("%w: the bind address %q is not an IP address", ErrRefused, i.cfg.Bind)
		}
		if err := bindable(netip.AddrPortFrom(ip, uint16(l.Port))); err != nil {
			return fmt.Errorf("%w: listener %s: %v", ErrRefused, l.Name, err)
		}
	}
	f := filepath.Join(i.cfg.Dir, "haproxy.cfg.next")
	if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
		return err
	}
	defer os.Remove(f)
	out, err := exec.CommandContext(ctx, i.bin, "-c", "-q", "-f", f).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", ErrRefused, strings.TrimSpace(string(out)))
	}
	return nil
}

// reload saves the servers' runtime state, writes the new configuration and has the master
// start new workers on it; they take the listening sockets over, and the old ones finish what
// they serve. It returns once a new worker answers on the Runtime API.
func (i *Instance) reload(ctx context.Context, text string, next edge.Slots) (err error) {
	stateFile := i.cfg.options().StateFile
	// The state file serves this reload only: a restart after a crash starts from the
	// configuration, which holds the servers as they are.
	defer os.Remove(stateFile)
	if !i.unsure {
		state, err := i.runtime(ctx, "show servers state")
		if err != nil {
			return fmt.Errorf("save the servers' state: %w", err)
		}
		if err := kubeproc.WriteFileAtomic(stateFile, []byte(edge.CarryState(state[0], next)), 0o600); err != nil {
			return err
		}
	}
	before, err := i.workerPID(ctx)
	if err != nil {
		return err
	}
	if err := kubeproc.WriteFileAtomic(i.cfg.configPath(), []byte(text), 0o600); err != nil {
		return err
	}
	defer func() {
		if err != nil { // what runs stays what a restart would run
			_ = kubeproc.WriteFileAtomic(i.cfg.configPath(), []byte(i.text), 0o600)
		}
	}()
	if _, err := i.master(ctx, "reload"); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if pid, err := i.workerPID(ctx); err == nil && pid != before {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no new worker 30 s after the reload; see %s", filepath.Join(i.cfg.Dir, "haproxy.log"))
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	return i.waitRuntime(ctx, 30*time.Second)
}

// workerPID is the PID of the master's current worker.
func (i *Instance) workerPID(ctx context.Context) (string, error) {
	out, err := i.master(ctx, "show proc")
	if err != nil {
		return "", err
	}
	// "#<PID> <type> <reloads> <uptime> <version>", the master first, then the current
	// workers, then a line "# old workers" and those.
	for _, l := range strings.Split(out[0], "\n") {
		if strings.HasPrefix(l, "# old") {
			break
		}
		if f := strings.Fields(l); len(f) >= 2 && f[1] == "worker" {
			return f[0], nil
		}
	}
	return "", errors.New("no current worker")
}

func (i *Instance) waitRuntime(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		_, err := i.runtime(ctx, "show info")
		if err == nil {
			return nil
		}
		select {
		case <-i.proc.Exited():
			return fmt.Errorf("haproxy exited: %s", i.proc.Tail(2048))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("haproxy's Runtime API does not answer after %s: %w", timeout, err)
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// runtime sends commands to the Runtime API in one connection and returns each answer. A
// `set server` whose answer is not a success makes the whole call fail, naming it.
func (i *Instance) runtime(ctx context.Context, cmds ...string) ([]string, error) {
	out, err := cli(ctx, i.cfg.socket(), "\n> ", cmds...)
	if err != nil {
		return nil, err
	}
	for n, a := range out {
		if !strings.HasPrefix(cmds[n], "set server ") {
			continue
		}
		a = strings.TrimSpace(a)
		ok := a == "" // state and weight answer nothing
		if strings.Contains(cmds[n], " addr ") {
			ok = strings.Contains(a, "changed from") || strings.Contains(a, "no need to change")
		}
		if !ok {
			return nil, fmt.Errorf("haproxy: %s: %s", cmds[n], a)
		}
	}
	return out, nil
}

// master sends commands to the master's CLI.
func (i *Instance) master(ctx context.Context, cmds ...string) ([]string, error) {
	return cli(ctx, i.cfg.masterSocket(), "master> ", cmds...)
}

// cli sends commands to an HAProxy CLI socket in interactive mode, all at once, and splits
// the answers at the prompt: "\n> " on the Runtime API, "master> " on the master's.
func cli(ctx context.Context, socket, prompt string, cmds ...string) ([]string, error) {
	if len(cmds) == 0 {
		return nil, nil
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	} else {
		_ = conn.SetDeadline(time.Now().Add(time.Minute))
	}
	w := bufio.NewWriter(conn)
	w.WriteString("prompt\n")
	for _, c := range cmds {
		w.WriteString(c)
		w.WriteString("\n")
	}
	w.WriteString("quit\n")
	if err := w.Flush(); err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(conn)
	if err != nil {
		return nil, err
	}
	// A prompt comes before each answer (the first one answers "prompt", with nothing).
	parts := strings.Split(string(raw), prompt)
	if len(parts) < len(cmds)+1 {
		return nil, fmt.Errorf("haproxy answered %d of %d commands: %q", len(parts)-1, len(cmds), raw)
	}
	out := make([]string, len(cmds))
	for n := range cmds {
		out[n] = strings.TrimSuffix(parts[n+1], "\n")
	}
	return out, nil
}

// bindable says whether HAProxy could bind addr: it binds with SO_REUSEPORT, so only a
// program that holds the port without it is in the way. The probe binds and never listens,
// so that it never joins the accept group of instances that already serve the port.
func bindable(addr netip.AddrPort) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if addr.Addr().Is6() {
		fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		return err
	}
	var sa unix.Sockaddr
	if addr.Addr().Is4() {
		sa = &unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().As4()}
	} else {
		sa = &unix.SockaddrInet6{Port: int(addr.Port()), Addr: addr.Addr().As16()}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fmt.Errorf("port %s is taken by another program, or the address is not this host's: %w", addr, err)
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
