package kubeproc

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A pid file records "PID STARTTIME EXECUTABLE". The start time (field 22 of /proc/PID/stat,
// in clock ticks since boot) and the executable together tell our child apart from an
// unrelated process that later got the same pid.

func writePIDFile(path string, pid int, exe string) error {
	start, err := procStartTime(pid)
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(exe)
	if err != nil {
		return err
	}
	return os.WriteFile(path, fmt.Appendf(nil, "%d %d %s\n", pid, start, abs), 0o644)
}

// procStartTime reads a process's start time from /proc/PID/stat.
func procStartTime(pid int) (uint64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces; fields after it are plain.
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	fields := strings.Fields(s[i+1:])
	// fields[0] is field 3 (state), so field 22 (starttime) is fields[19].
	if len(fields) < 20 {
		return 0, fmt.Errorf("parse /proc/%d/stat: too few fields", pid)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// ReapStale stops the child recorded in each pid file under dir ("*.pid") if, and only if,
// that exact process still runs: same pid, same start time, same executable. A parent killed
// with SIGKILL normally takes its children with it (see launch); this is for the rest. Pid
// files of processes that are gone, or whose pid now belongs to another program, are removed
// without signalling anything. It returns the names of the children it stopped.
func ReapStale(dir string, log *slog.Logger) ([]string, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.pid"))
	if err != nil {
		return nil, err
	}
	var reaped []string
	for _, path := range paths {
		name := strings.TrimSuffix(filepath.Base(path), ".pid")
		pid, ok := staleChild(path)
		if ok {
			log.Warn("stopping a child left running by an earlier run", "child", name, "pid", pid)
			if err := killAndWait(pid, 10*time.Second); err != nil {
				return reaped, fmt.Errorf("stop stale %s (pid %d): %w", name, pid, err)
			}
			reaped = append(reaped, name)
		}
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			return reaped, fmt.Errorf("remove pid file: %w", err)
		}
	}
	return reaped, nil
}

// staleChild reports the pid recorded at path if that process is still the one recorded.
func staleChild(path string) (int, bool) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(raw))
	if len(f) != 3 {
		return 0, false
	}
	pid, err1 := strconv.Atoi(f[0])
	start, err2 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil || pid <= 1 {
		return 0, false
	}
	now, err := procStartTime(pid)
	if err != nil || now != start {
		return 0, false
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil || strings.TrimSuffix(exe, " (deleted)") != f[2] {
		return 0, false
	}
	return pid, true
}

func killAndWait(pid int, grace time.Duration) error {
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for range 100 {
		if !alive(pid) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("process %d survived SIGKILL", pid)
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}
