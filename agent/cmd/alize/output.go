package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// printer writes a command's output: text for people (colours only on a
// terminal), or JSON for scripts.
type printer struct {
	w     io.Writer
	color bool
	now   time.Time
}

func (g *globals) printer() *printer {
	p := &printer{w: g.stdout, now: time.Now()}
	switch g.color {
	case "always":
		p.color = true
	case "never":
	default:
		p.color = isTerminal(g.stdout) && os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb"
	}
	return p
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func (p *printer) json(v any) error {
	enc := json.NewEncoder(p.w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (p *printer) printf(format string, args ...any) { fmt.Fprintf(p.w, format, args...) }

const (
	red    = "31"
	green  = "32"
	yellow = "33"
	bold   = "1"
	dim    = "2"
)

func (p *printer) paint(code, s string) string {
	if !p.color {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

// word colours a state word by what it means.
func (p *printer) word(s string) string {
	switch s {
	case "ok", "applied", "compliant", "corrected", "running", "reachable":
		return p.paint(green, s)
	case "warning", "drifted", "drift", "pending", "skipped", "not running", "would change":
		return p.paint(yellow, s)
	case "failed", "failing", "refused", "reverted", "unreachable", "error":
		return p.paint(red, s)
	}
	return s
}

// padded pads a coloured word to width, counting only visible characters.
func (p *printer) padded(s string, width int) string {
	w := p.word(s)
	if n := width - len([]rune(s)); n > 0 {
		return w + strings.Repeat(" ", n)
	}
	return w
}

// ago says how long ago t was, for people.
func (p *printer) ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	if d := p.now.Sub(t); d < time.Second {
		return "just now" // not "now ago"
	}
	return human(p.now.Sub(t)) + " ago"
}

// in says how long until t, for people.
func (p *printer) in(t time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	d := t.Sub(p.now)
	switch {
	case d <= -time.Second:
		return human(-d) + " ago"
	case d < time.Second:
		return "now" // not "in now"
	}
	return "in " + human(d)
}

func human(d time.Duration) string {
	switch {
	case d < time.Second:
		return "now"
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h %02d min", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%d days", int(d.Hours()/24))
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}
