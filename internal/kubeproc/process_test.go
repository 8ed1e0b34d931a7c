package kubeproc

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func sleeper(t *testing.T, dir string) Spec {
	t.Helper()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	return Spec{Name: "sleeper", Path: sleep, Args: []string{"600"}, LogPath: filepath.Join(dir, "sleeper.log"), PIDPath: filepath.Join(dir, "sleeper.pid"), StopTimeout: 2 * time.Second}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCrashedChildIsRestartedWithBackoff(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p, err := Start(sleeper(t, dir), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(context.Background())

	first := p.Status().PID
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a restart", func() bool { s := p.Status(); return s.Running && s.PID != first })
	if s := p.Status(); s.Restarts != 1 || !strings.Contains(s.LastExit, "killed") {
		t.Errorf("status after one crash = %+v", s)
	}
	second := p.Status().PID
	start := time.Now()
	syscall.Kill(second, syscall.SIGKILL)
	waitUntil(t, "a second restart", func() bool { s := p.Status(); return s.Running && s.PID != second })
	// The backoff doubles: the second restart waits at least 2 x minBackoff.
	if took := time.Since(start); took < 2*minBackoff {
		t.Errorf("second restart after %s, want at least %s", took, 2*minBackoff)
	}
	if raw, _ := os.ReadFile(filepath.Join(dir, "sleeper.log")); strings.Count(string(raw), "=== convoy: starting sleeper") != 3 {
		t.Errorf("log does not mark three starts:\n%s", raw)
	}
}

func TestStopEndsTheChildAndItsPIDFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p, err := Start(sleeper(t, dir), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	pid := p.Status().PID
	p.Stop(context.Background())
	if alive(pid) {
		t.Errorf("child %d still alive after Stop", pid)
	}
	if _, err := os.Stat(filepath.Join(dir, "sleeper.pid")); !os.IsNotExist(err) {
		t.Errorf("pid file left after Stop: %v", err)
	}
	p.Stop(context.Background()) // a second Stop is harmless
}

func TestStartOfMissingBinaryFails(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, err := Start(Spec{Name: "ghost", Path: filepath.Join(dir, "ghost"), LogPath: filepath.Join(dir, "ghost.log")}, testLogger(t))
	if err == nil || !strings.Contains(err.Error(), "start ghost") {
		t.Fatalf("err = %v", err)
	}
}

func TestReapStaleStopsOnlyOurOwnChild(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	spec := sleeper(t, dir)

	// A child recorded by an earlier parent that died without taking it along.
	stale := exec.Command(spec.Path, "600")
	stale.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := stale.Start(); err != nil {
		t.Fatal(err)
	}
	go stale.Wait()
	if err := writePIDFile(filepath.Join(dir, "stale.pid"), stale.Process.Pid, spec.Path); err != nil {
		t.Fatal(err)
	}

	// A pid file whose pid now belongs to another program (same pid, other start time).
	other := exec.Command(spec.Path, "600")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { other.Process.Kill(); other.Wait() }()
	start, _ := procStartTime(other.Process.Pid)
	os.WriteFile(filepath.Join(dir, "reused.pid"), []byte(strings.Join([]string{strconv.Itoa(other.Process.Pid), strconv.FormatUint(start+1, 10), spec.Path}, " ")), 0o644)

	// A pid file of a process long gone.
	os.WriteFile(filepath.Join(dir, "gone.pid"), []byte("999999999 1 /bin/true"), 0o644)

	reaped, err := ReapStale(dir, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(reaped) != 1 || reaped[0] != "stale" {
		t.Errorf("reaped %v, want [stale]", reaped)
	}
	waitUntil(t, "the stale child to die", func() bool { return !alive(stale.Process.Pid) })
	if !alive(other.Process.Pid) {
		t.Error("a process that merely reused a recorded pid was killed")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.pid")); len(left) != 0 {
		t.Errorf("pid files left: %v", left)
	}
}

// A detached child outlives its parent's supervision (Detach), and a later parent takes that
// very process over (Adopt), supervises it (restarts it when it exits) and stops it.
func TestDetachAndAdopt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	spec := sleeper(t, dir)
	spec.Detach = true
	p, err := Start(spec, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	pid := p.Status().PID
	p.Detach()
	if !alive(pid) {
		t.Fatalf("child %d gone after Detach", pid)
	}
	next, ok := Adopt(spec, testLogger(t))
	if !ok {
		t.Fatal("Adopt found nothing to take over")
	}
	if got := next.Status().PID; got != pid {
		t.Fatalf("adopted pid %d, want %d", got, pid)
	}
	// Exited on its own: supervised again, so started afresh.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for next.Status().PID == pid || !next.Status().Running {
		if time.Now().After(deadline) {
			t.Fatalf("the adopted child was not restarted: %+v", next.Status())
		}
		time.Sleep(50 * time.Millisecond)
	}
	restarted := next.Status().PID
	next.Stop(context.Background())
	if alive(restarted) {
		t.Errorf("child %d alive after Stop", restarted)
	}
	if _, ok := Adopt(spec, testLogger(t)); ok {
		t.Error("Adopt took over a stopped child")
	}
	// Without Detach, nothing is adopted.
	spec.Detach = false
	if _, ok := Adopt(spec, testLogger(t)); ok {
		t.Error("Adopt of a spec that is not detached")
	}
}
