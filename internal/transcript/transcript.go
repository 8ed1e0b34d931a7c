// Package transcript runs the data-driven tests of Convoy's pure packages (internal/rollout,
// internal/plan), in the manner of etcd-io/raft's: a file in testdata/ holds blocks, each a
// command (with any lines it takes), a line "----", the output it must give, and a blank line.
// Comment lines (#) at the top describe the file; those before a block describe the block. With
// -update the expected output is rewritten from what the test gives; review the diff. Only tests
// import it.
package transcript

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Block is one command and the output it must give.
type Block struct {
	Comment []string // the comment lines before it
	Input   []string // the command, then the lines it takes
	Want    string
}

// Parse reads a transcript: the comment lines at its top, and its blocks.
func Parse(raw string) (header string, blocks []Block, err error) {
	lines := strings.Split(raw, "\n")
	i := 0
	for ; i < len(lines) && strings.HasPrefix(lines[i], "#"); i++ {
		header += lines[i] + "\n"
	}
	var comment []string
	for i < len(lines) {
		switch {
		case strings.TrimSpace(lines[i]) == "":
			i++
			continue
		case strings.HasPrefix(lines[i], "#"):
			comment = append(comment, lines[i])
			i++
			continue
		}
		b := Block{Comment: comment}
		comment = nil
		for i < len(lines) && lines[i] != "----" {
			b.Input = append(b.Input, lines[i])
			i++
		}
		if i == len(lines) {
			return "", nil, fmt.Errorf("a block without ----: %v", b.Input)
		}
		i++
		var want []string
		for i < len(lines) && lines[i] != "" {
			want = append(want, lines[i])
			i++
		}
		b.Want = strings.Join(want, "\n")
		blocks = append(blocks, b)
	}
	return header, blocks, nil
}

// Run runs every testdata/*.txt of the calling package as a subtest: a fresh run (state of the
// caller's own) for each file, do for each block, in order. With update it rewrites each file
// with the output do gave.
func Run(t *testing.T, update bool, fresh func(t *testing.T) func(input []string) string) {
	t.Helper()
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no transcripts in testdata/")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) { runFile(t, f, update, fresh(t)) })
	}
}

func runFile(t *testing.T, path string, update bool, do func(input []string) string) {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	header, blocks, err := Parse(string(raw))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out strings.Builder
	for _, b := range blocks {
		got := do(b.Input)
		for _, c := range b.Comment {
			out.WriteString(c + "\n")
		}
		fmt.Fprintf(&out, "%s\n----\n%s\n\n", strings.Join(b.Input, "\n"), got)
		if !update && got != b.Want {
			t.Errorf("%s:\n%s\n--- got\n%s\n--- want\n%s", path, strings.Join(b.Input, "\n"), got, b.Want)
		}
	}
	if update {
		if err := os.WriteFile(path, []byte(header+"\n"+strings.TrimRight(out.String(), "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
