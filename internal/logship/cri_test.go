package logship

import (
	"testing"
	"time"
)

func TestParseRecord(t *testing.T) {
	for _, tc := range []struct {
		in      string
		stream  string
		partial bool
		msg     string
		bad     bool
	}{
		{in: "2026-12-04T16:00:00.123456789Z stdout F GET / 200", stream: "stdout", msg: "GET / 200"},
		{in: "2026-12-04T16:00:00Z stderr P first half ", stream: "stderr", partial: true, msg: "first half "},
		{in: "2026-12-04T16:00:00.1+01:00 stdout F:x  two spaces", stream: "stdout", msg: " two spaces"},
		{in: "2026-12-04T16:00:00Z stdout F", stream: "stdout", msg: ""},
		{in: "2026-12-04T16:00:00Z stdout F ", stream: "stdout", msg: ""},
		{in: "not a record", bad: true},
		{in: "2026-12-04T16:00:00Z stdin F x", bad: true},
		{in: "2026-12-04T16:00:00Z stdout X x", bad: true},
		{in: "yesterday stdout F x", bad: true},
		{in: `{"level":"info"}`, bad: true},
	} {
		r, err := parseRecord([]byte(tc.in))
		if tc.bad {
			if err == nil {
				t.Errorf("%q: parsed as %+v", tc.in, r)
			}
			continue
		}
		if err != nil || r.stream != tc.stream || r.partial != tc.partial || string(r.msg) != tc.msg || r.time.IsZero() {
			t.Errorf("%q: %+v %v, want stream %s partial %v message %q", tc.in, r, err, tc.stream, tc.partial, tc.msg)
		}
	}
	r, _ := parseRecord([]byte("2026-12-04T16:00:00.5+01:00 stdout F x"))
	if want := time.Date(2026, 12, 4, 15, 0, 0, 5e8, time.UTC); !r.time.Equal(want) {
		t.Errorf("time %s, want %s", r.time, want)
	}
}
