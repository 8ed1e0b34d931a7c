package kubeproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Spec describes one supervised child process.
type Spec struct {
	// Name identifies the child in logs and errors, for example "kube-apiserver".
	Name string
	// Path is the executable.
	Path string
	// Args are the arguments, without the executable.
	Args []string
	// Env is added to the parent's environment.
	Env []string
	// LogPath receives the child's stdout and stderr, appended.
	LogPath string
	// PIDPath, when set, records the running child so that a later parent can find it
	// after this one was killed (see ReapStale).
	PIDPath string
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL. Zero means 10s.
	StopTimeout time.Duration
	// Detach lets the child outlive this process: it is not killed when this process dies,
	// and a later parent takes it over with Adopt (its PIDPath is then required).
	Detach bool
}

// Restart backoff: the delay doubles from minBackoff up to maxBackoff, and resets once a child
// has stayed up for stableAfter.
const (
	minBackoff  = 500 * time.Millisecond
	maxBackoff  = 30 * time.Second
	stableAfter = time.Minute
)

// Process is a running, supervised child. A child that exits on its own is restarted with
// backoff until Stop is called. All methods are safe for concurrent use.
type Process struct {
	spec Spec
	log  *slog.Logger

	mu       sync.Mutex
	cmd      *exec.Cmd // nil while the child is an adopted one
	pid      int       // the running child's
	running  bool
	restarts int
	lastExit error
	exitTail string
	stopping bool

	stop chan struct{} // closed by Stop
	done chan struct{} // closed when supervision ends
}

// Start launches the child and supervises it in the background. An error means the child
// could not be started at all (missing binary, unwritable log); nothing is left running.
func Start(spec Spec, log *slog.Logger) (*Process, error) {
	if spec.StopTimeout == 0 {
		spec.StopTimeout = 10 * time.Second
	}
	p := &Process{
		spec: spec,
		log:  log.With("child", spec.Name),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	if err := p.launch(); err != nil {
		return nil, err
	}
	go p.supervise()
	return p, nil
}

// launch starts one incarnation of the child. The child gets its own process group, so a stop
// reaches anything it forks, and SIGKILL when this process dies, so no child outlives a parent
// killed with SIGKILL; unless the spec says Detach, for a child meant to outlive it (Adopt).
func (p *Process) launch() error {
	logf, err := os.OpenFile(p.spec.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open log of %s: %w", p.spec.Name, err)
	}
	defer logf.Close() // the child holds its own descriptor
	fmt.Fprintf(logf, "\n=== convoy: starting %s at %s\n", p.spec.Name, time.Now().Format(time.RFC3339))

	cmd := exec.Command(p.spec.Path, p.spec.Args...)
	cmd.Env = append(os.Environ(), p.spec.Env...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if p.spec.Detach {
		cmd.SysProcAttr.Pdeathsig = 0
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopping {
		return errors.New("stopping")
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s (%s): %w", p.spec.Name, p.spec.Path, err)
	}
	p.cmd, p.pid = cmd, cmd.Process.Pid
	p.running = true
	if p.spec.PIDPath != "" {
		if err := writePIDFile(p.spec.PIDPath, cmd.Process.Pid, p.spec.Path); err != nil {
			p.log.Warn("cannot record child pid", "err", err)
		}
	}
	p.log.Debug("child started", "pid", cmd.Process.Pid)
	return nil
}

func (p *Process) supervise() {
	defer close(p.done)
	delay := minBackoff
	for {
		p.mu.Lock()
		cmd, pid := p.cmd, p.pid
		p.mu.Unlock()
		started := time.Now()
		var err error
		if cmd != nil {
			if err = cmd.Wait(); err == nil {
				err = errors.New("exited with status 0")
			}
		} else {
			// An adopted child is not ours to wait for: watch for it to be gone.
			for alive(pid) {
				time.Sleep(100 * time.Millisecond)
			}
			err = errors.New("the adopted child exited")
		}

		p.mu.Lock()
		p.running = false
		p.lastExit = err
		stopping := p.stopping
		p.mu.Unlock()
		if stopping {
			return
		}
		tail := p.Tail(2048)
		p.mu.Lock()
		p.exitTail = tail
		p.mu.Unlock()

		if time.Since(started) > stableAfter {
			delay = minBackoff
		}
		wait := delay + rand.N(delay/5+1)
		p.log.Warn("child exited; restarting", "err", err, "in", wait.Round(time.Millisecond), "lastLine", lastLine(tail))
		for {
			select {
			case <-p.stop:
				return
			case <-time.After(wait):
			}
			delay = min(delay*2, maxBackoff)
			p.mu.Lock()
			p.restarts++
			p.mu.Unlock()
			err := p.launch()
			if err == nil {
				break
			}
			if p.isStopping() {
				return
			}
			p.log.Error("cannot restart child", "err", err)
			wait = delay
		}
	}
}

func (p *Process) isStopping() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopping
}

// Stop ends supervision and stops the child: SIGTERM to its process group, then SIGKILL after
// the spec's StopTimeout or when ctx ends. It returns once the child has exited.
func (p *Process) Stop(ctx context.Context) {
	p.mu.Lock()
	if p.stopping {
		p.mu.Unlock()
		<-p.done
		return
	}
	p.stopping = true
	close(p.stop)
	pid, running := p.pid, p.running
	p.mu.Unlock()

	if running {
		_ = syscall.Kill(-pid, syscall.SIGTERM)
		timer := time.NewTimer(p.spec.StopTimeout)
		defer timer.Stop()
		select {
		case <-p.done:
		case <-timer.C:
			p.log.Warn("child ignored SIGTERM; killing it", "after", p.spec.StopTimeout)
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		case <-ctx.Done():
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
	}
	<-p.done
	if p.spec.PIDPath != "" {
		_ = os.Remove(p.spec.PIDPath)
	}
	p.log.Info("child stopped")
}

// Adopt takes over the detached child that an earlier parent started from spec, if its pid
// file records one that still runs (the same process: pid, start time, executable), and
// supervises it as Start would: restarted when it exits, stopped by Stop. It reports false,
// and starts nothing, when there is none to adopt.
func Adopt(spec Spec, log *slog.Logger) (*Process, bool) {
	if !spec.Detach || spec.PIDPath == "" {
		return nil, false
	}
	pid, ok := staleChild(spec.PIDPath)
	if !ok {
		return nil, false
	}
	if spec.StopTimeout == 0 {
		spec.StopTimeout = 10 * time.Second
	}
	p := &Process{spec: spec, log: log.With("child", spec.Name), stop: make(chan struct{}), done: make(chan struct{}), pid: pid, running: true}
	p.log.Info("child adopted from an earlier run", "pid", pid)
	go p.supervise()
	return p, true
}

// Detach ends supervision and leaves the child running, for a later parent to Adopt.
func (p *Process) Detach() {
	p.mu.Lock()
	if p.stopping {
		p.mu.Unlock()
		return
	}
	p.stopping = true
	close(p.stop)
	p.mu.Unlock()
	// The supervising goroutine waits on until the child exits (whoever stops it), and then
	// sees that it is not to restart it.
}

// Name is the child's name from its Spec.
func (p *Process) Name() string { return p.spec.Name }

// Status is a snapshot of a supervised child.
type Status struct {
	Name     string `json:"name"`
	Running  bool   `json:"running"`
	PID      int    `json:"pid,omitempty"`
	Restarts int    `json:"restarts"`
	LastExit string `json:"lastExit,omitempty"`
	// ExitTail is the end of the child's log when it last exited on its own.
	ExitTail string `json:"exitTail,omitempty"`
}

// Status reports whether the child runs now, its pid, and how often it was restarted.
func (p *Process) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Status{Name: p.spec.Name, Running: p.running, Restarts: p.restarts}
	if p.running {
		s.PID = p.pid
	}
	if p.lastExit != nil {
		s.LastExit = p.lastExit.Error()
	}
	s.ExitTail = p.exitTail
	return s
}

// Exited is closed when supervision has ended, after Stop.
func (p *Process) Exited() <-chan struct{} { return p.done }

// Tail returns up to n bytes from the end of the child's log, starting at a line boundary.
func (p *Process) Tail(n int64) string {
	f, err := os.Open(p.spec.LogPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-n, 0)
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return ""
	}
	s := string(buf)
	if off > 0 {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:]
		}
	}
	return s
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// StopAll stops processes in reverse order: the last started stops first.
func StopAll(ctx context.Context, procs []*Process) {
	for i := len(procs) - 1; i >= 0; i-- {
		if procs[i] != nil {
			procs[i].Stop(ctx)
		}
	}
}
