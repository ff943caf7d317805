package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/mcp-relay/mcp-relay/handler/toolpin"
)

var toolDigests = flag.Bool("tool-digests", false,
	"read a tools/list answer (JSON or SSE) on stdin, print the config.tools.pin.approved entries of its tools, and exit")

// printToolDigests lets an operator approve a tool change before it is
// deployed: list the tools of the new server version (curl its tools/list,
// or save the answer), and paste the entries into the deck. It exits 1 when
// the answer holds no tools or an entry cannot be pinned.
func printToolDigests(in io.Reader, out, errOut io.Writer) int {
	body, err := io.ReadAll(io.LimitReader(in, 64<<20))
	if err != nil {
		fmt.Fprintln(errOut, "mcp-relay -tool-digests:", err)
		return 1
	}
	pages, ok := toolpin.ReadAnswer(body)
	if !ok {
		fmt.Fprintln(errOut, "mcp-relay -tool-digests: not a JSON or SSE answer")
		return 1
	}
	n, bad := 0, 0
	fmt.Fprintln(out, "# config.tools.pin.approved entries")
	for _, p := range pages {
		for _, t := range p.Tools {
			if t.Digest == "" {
				fmt.Fprintf(errOut, "mcp-relay -tool-digests: tool %q cannot be pinned: %v\n", t.Name, t.Err)
				bad++
				continue
			}
			fmt.Fprintln(out, "- "+toolpin.DeckEntry(t.Name, t.Digest))
			n++
		}
	}
	if n == 0 && bad == 0 {
		fmt.Fprintln(errOut, "mcp-relay -tool-digests: no tools/list result in the answer")
		return 1
	}
	if bad > 0 {
		return 1
	}
	return 0
}

func runToolDigests() { os.Exit(printToolDigests(os.Stdin, os.Stdout, os.Stderr)) }
