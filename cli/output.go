package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Printer writes a command's results to standard output, as text for people
// or, with --output json, as JSON for programs.
type Printer struct {
	w    io.Writer
	json bool
}

// Linef prints one line of text.
func (p *Printer) Linef(format string, args ...any) {
	fmt.Fprintf(p.w, format+"\n", args...)
}

// JSON prints v as indented JSON.
func (p *Printer) JSON(v any) error {
	enc := json.NewEncoder(p.w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Raw prints an API answer's JSON body as it came, indented for reading.
func (p *Printer) Raw(body []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, bytes.TrimSpace(body), "", "  "); err != nil {
		buf.Reset()
		buf.Write(bytes.TrimSpace(body))
	}
	buf.WriteByte('\n')
	_, err := p.w.Write(buf.Bytes())
	return err
}

// Table prints rows under a header, in aligned columns.
func (p *Printer) Table(header []string, rows [][]string) {
	tw := tabwriter.NewWriter(p.w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	_ = tw.Flush()
}

// yesNo formats a flag for a table.
func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// orDash formats an empty cell.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
