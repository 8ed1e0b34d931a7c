package kubeproc

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

func TestPortReservations(t *testing.T) {
	portsDir = t.TempDir() // not the machine's: other tests run at once
	p, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(portsDir, strconv.Itoa(p)))
	if err != nil || string(raw) != strconv.Itoa(os.Getpid()) {
		t.Fatalf("port %d is not reserved for this process: %q, %v", p, raw, err)
	}
	if reservePort(p) {
		t.Errorf("port %d reserved twice", p)
	}

	// A reservation whose process is gone is taken over; a half-written one is left alone.
	done := exec.Command("true")
	if err := done.Run(); err != nil {
		t.Fatal(err)
	}
	const stale, fresh = 20001, 20002
	os.WriteFile(filepath.Join(portsDir, strconv.Itoa(stale)), []byte(strconv.Itoa(done.Process.Pid)), 0o644)
	os.WriteFile(filepath.Join(portsDir, strconv.Itoa(fresh)), nil, 0o644)
	if !reservePort(stale) {
		t.Errorf("the reservation of a process that is gone was not taken over")
	}
	if reservePort(fresh) {
		t.Errorf("a reservation being written was taken over")
	}
}
