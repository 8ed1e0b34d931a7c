package logship

import (
	"bytes"
	"errors"
	"time"
)

// A record is one line of a CRI container log file, as the container runtime writes it:
//
//	2026-12-04T16:00:00.123456789Z stdout F the message
//
// A message longer than the runtime's buffer is split into records tagged P (partial), the
// last of them tagged F (full).
type record struct {
	time    time.Time
	stream  string
	partial bool
	msg     []byte
}

var errRecord = errors.New("not a CRI log record: want TIME STREAM TAG MESSAGE")

// parseRecord parses one record, without its newline. The message shares b's memory.
func parseRecord(b []byte) (record, error) {
	var r record
	ts, rest, ok := bytes.Cut(b, []byte{' '})
	if !ok {
		return r, errRecord
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return r, errRecord
	}
	stream, rest, ok := bytes.Cut(rest, []byte{' '})
	if !ok || (string(stream) != "stdout" && string(stream) != "stderr") {
		return r, errRecord
	}
	// The tags are colon-separated; the first says partial or full. The message may be empty,
	// and then so may the space before it be.
	tags, msg, _ := bytes.Cut(rest, []byte{' '})
	first, _, _ := bytes.Cut(tags, []byte{':'})
	switch string(first) {
	case "P":
		r.partial = true
	case "F":
	default:
		return r, errRecord
	}
	r.time, r.stream, r.msg = t, string(stream), msg
	return r, nil
}
