package observe

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// maxLogLines bounds what one request's lines may be once uncompressed.
const maxLogLines = 128 << 20

// CleanLogLines uncompresses a collector's JSON lines (Content-Encoding zstd, gzip or none) and
// keeps, of each line, the first of every field it repeats. Convoy's collector writes each field
// once, but the endpoint takes any agent's lines (vlagent, for one, writes its own fields
// before those it parsed from a container's JSON output, and keeps both). A repeated stream
// field makes VictoriaLogs v1.52.1 exit ("stream tags must be sorted"), and a later one would
// let a container pass its lines off as another pod's. Lines that are not JSON objects are
// dropped.
func CleanLogLines(body []byte, encoding string) ([]byte, error) {
	var r io.Reader = bytes.NewReader(body)
	switch encoding {
	case "", "identity":
	case "zstd":
		d, err := zstd.NewReader(r, zstd.WithDecoderMaxMemory(maxLogLines), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		defer d.Close()
		r = d
	case "gzip":
		g, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("the lines' gzip: %v", err)
		}
		r = g
	default:
		return nil, fmt.Errorf("lines encoded as %q: send them as they are, or in zstd or gzip", encoding)
	}
	raw, err := io.ReadAll(io.LimitReader(r, maxLogLines+1))
	if err != nil {
		return nil, fmt.Errorf("uncompress the lines (%s): %v", encoding, err)
	}
	if len(raw) > maxLogLines {
		return nil, fmt.Errorf("a request's lines are at most %d bytes uncompressed", maxLogLines)
	}
	var out bytes.Buffer
	out.Grow(len(raw))
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 0, 64<<10), maxLogLines)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if clean, err := firstFields(line); err == nil {
			out.Write(clean)
			out.WriteByte('\n')
		}
	}
	return out.Bytes(), sc.Err()
}

// firstFields rewrites one JSON object with the first of each repeated field only.
func firstFields(line []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	seen := map[string]bool{}
	var b bytes.Buffer
	b.WriteByte('{')
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := t.(string)
		if !ok {
			return nil, errors.New("not a JSON object")
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		if seen[key] {
			continue
		}
		seen[key] = true
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(key)
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}
