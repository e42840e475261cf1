// Command gendoc writes the man pages and the bash and zsh completions of
// a built cobra command (alize, alize-controller) for the Debian package:
//
//	gendoc -bin build/alize -name alize -version 1.2.0 -out build/doc
//
// It walks the command tree through the binary itself — cobra's hidden
// `__complete` command lists the subcommands, `help <command>` gives each
// one's text — so the pages say exactly what the shipped binary says, and
// no code of the commands has to be importable (they are package main).
// The completion scripts are cobra's own (GenBashCompletionV2,
// GenZshCompletion): they depend only on the command's name and ask the
// binary (`alize __complete …`) at each <Tab>.
//
// Only the packaging (packaging/deb.mk, debian/rules) runs it.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "gendoc: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("gendoc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bin := fs.String("bin", "", "the built command")
	name := fs.String("name", "", "its name (alize, alize-controller)")
	version := fs.String("version", "", "the version, for the pages' footer")
	out := fs.String("out", "", "output directory: man1/, bash-completion/, zsh/")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *bin == "" || *name == "" || *out == "" {
		return errors.New("usage: gendoc -bin PATH -name NAME [-version V] -out DIR")
	}
	g := &gen{bin: *bin, name: *name, version: *version, date: buildDate()}
	cmds, err := g.walk(ctx, &command{root: g.name})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(*out, "man1"), 0o755); err != nil {
		return err
	}
	for _, c := range cmds {
		page, err := g.page(ctx, c)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(*out, "man1", c.pageName()+".1"), page, 0o644); err != nil {
			return err
		}
	}
	return completions(*name, *out)
}

// buildDate is SOURCE_DATE_EPOCH's day (reproducible builds), else today.
func buildDate() string {
	t := time.Now().UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			t = time.Unix(n, 0).UTC()
		}
	}
	return t.Format(time.DateOnly)
}

// completions writes cobra's bash and zsh scripts for the command name.
func completions(name, out string) error {
	cmd := &cobra.Command{Use: name}
	var bash, zsh bytes.Buffer
	if err := cmd.GenBashCompletionV2(&bash, true); err != nil {
		return err
	}
	if err := cmd.GenZshCompletion(&zsh); err != nil {
		return err
	}
	for dir, f := range map[string]struct {
		file string
		data []byte
	}{
		"bash-completion": {name, bash.Bytes()},
		"zsh":             {"_" + name, zsh.Bytes()},
	} {
		if err := os.MkdirAll(filepath.Join(out, dir), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(out, dir, f.file), f.data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

type gen struct {
	bin, name, version, date string
}

// command is one node of the tree: its path under the root and its
// one-line description.
type command struct {
	root     string
	path     []string
	short    string
	children []*command
	parent   *command
}

func (c *command) pageName() string { return strings.Join(append([]string{c.root}, c.path...), "-") }
func (c *command) fullName() string { return strings.Join(append([]string{c.root}, c.path...), " ") }

// walk lists c and, depth first, every subcommand under it (help and
// completion left out: they have no page of their own).
func (g *gen) walk(ctx context.Context, c *command) ([]*command, error) {
	all := []*command{c}
	subs, err := g.subcommands(ctx, c.path)
	if err != nil {
		return nil, err
	}
	for _, s := range subs {
		child := &command{root: c.root, path: append(append([]string(nil), c.path...), s[0]), short: s[1], parent: c}
		grand, err := g.walk(ctx, child)
		if err != nil {
			return nil, err
		}
		c.children = append(c.children, child)
		all = append(all, grand...)
	}
	return all, nil
}

// subcommands asks the binary which subcommands path has: name and
// description, one a line, then cobra's ":directive" line.
func (g *gen) subcommands(ctx context.Context, path []string) ([][2]string, error) {
	args := append(append([]string{"__complete"}, path...), "")
	out, err := exec.CommandContext(ctx, g.bin, args...).Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", g.bin, strings.Join(args, " "), err)
	}
	var subs [][2]string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, ":") {
			continue
		}
		name, desc, _ := strings.Cut(line, "\t")
		if name == "help" || name == "completion" || strings.HasPrefix(name, "-") {
			continue
		}
		subs = append(subs, [2]string{name, desc})
	}
	return subs, sc.Err()
}

// page renders the man page of c from `help <path>`.
func (g *gen) page(ctx context.Context, c *command) ([]byte, error) {
	args := append([]string{"help"}, c.path...)
	cmd := exec.CommandContext(ctx, g.bin, args...)
	cmd.Env = append(os.Environ(), "NO_COLOR=1", "COLUMNS=80")
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", g.bin, strings.Join(args, " "), err)
	}
	desc, sections := parseHelp(string(out))
	short := c.short
	if short == "" {
		short = firstLine(desc)
	}

	var b strings.Builder
	fmt.Fprintf(&b, ".\\\" Generated by packaging/gendoc from %s %s: do not edit.\n", c.fullName(), "--help")
	fmt.Fprintf(&b, ".TH %s 1 %s %s \"Aliz\\[e aa] manual\"\n",
		quote(strings.ToUpper(c.pageName())), quote(g.date), quote(strings.TrimSpace(g.name+" "+g.version)))
	b.WriteString(".SH NAME\n")
	fmt.Fprintf(&b, "%s \\- %s\n", escape(c.pageName()), escape(strings.TrimSuffix(short, ".")))
	if u, ok := sections["Usage"]; ok {
		b.WriteString(".SH SYNOPSIS\n")
		verbatim(&b, u)
	}
	if strings.TrimSpace(desc) != "" {
		b.WriteString(".SH DESCRIPTION\n")
		paragraphs(&b, desc)
	}
	for _, s := range []struct{ key, title string }{
		{"Aliases", "ALIASES"},
		{"Available Commands", "COMMANDS"},
		{"Flags", "OPTIONS"},
		{"Global Flags", "GLOBAL OPTIONS"},
		{"Examples", "EXAMPLES"},
	} {
		if text, ok := sections[s.key]; ok {
			fmt.Fprintf(&b, ".SH %s\n", quote(s.title))
			verbatim(&b, text)
		}
	}
	var see []string
	if c.parent != nil {
		see = append(see, fmt.Sprintf(".BR %s (1)", escape(c.parent.pageName())))
	}
	for _, ch := range c.children {
		see = append(see, fmt.Sprintf(".BR %s (1)", escape(ch.pageName())))
	}
	if len(see) > 0 {
		b.WriteString(".SH \"SEE ALSO\"\n")
		for i, s := range see {
			if i < len(see)-1 {
				s += " ,"
			}
			b.WriteString(s + "\n")
		}
	}
	return []byte(b.String()), nil
}

// parseHelp splits cobra's help into the description (before "Usage:")
// and its titled sections ("Flags:" …), indentation removed.
func parseHelp(help string) (string, map[string]string) {
	sections := map[string]string{}
	lines := strings.Split(strings.TrimRight(help, "\n"), "\n")
	var desc []string
	title := ""
	var body []string
	flush := func() {
		if title != "" {
			sections[title] = dedent(strings.Trim(strings.Join(body, "\n"), "\n"))
		}
		body = nil
	}
	for _, l := range lines {
		if t, ok := sectionTitle(l); ok {
			flush()
			title = t
			continue
		}
		if title == "" {
			desc = append(desc, l)
		} else {
			body = append(body, l)
		}
	}
	flush()
	for k, v := range sections {
		// "Use "alize service [command] --help" for more…" ends the last section.
		if i := strings.Index(v, "\n\nUse \""); i >= 0 {
			sections[k] = v[:i]
		}
	}
	return strings.Trim(strings.Join(desc, "\n"), "\n"), sections
}

func sectionTitle(l string) (string, bool) {
	switch l {
	case "Usage:", "Aliases:", "Examples:", "Available Commands:", "Flags:", "Global Flags:", "Additional help topics:":
		return strings.TrimSuffix(l, ":"), true
	}
	return "", false
}

func dedent(s string) string {
	lines := strings.Split(s, "\n")
	indent := -1
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		n := len(l) - len(strings.TrimLeft(l, " "))
		if indent < 0 || n < indent {
			indent = n
		}
	}
	for i, l := range lines {
		if len(l) >= indent && indent > 0 {
			lines[i] = l[indent:]
		}
	}
	return strings.Join(lines, "\n")
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return l
}

// paragraphs writes text as filled paragraphs; indented lines stay as
// they are (lists, examples).
func paragraphs(b *strings.Builder, text string) {
	for i, p := range strings.Split(text, "\n\n") {
		if i > 0 {
			b.WriteString(".PP\n")
		}
		indented := false
		for _, l := range strings.Split(p, "\n") {
			if strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t") {
				indented = true
			}
		}
		if indented {
			verbatim(b, p)
			continue
		}
		for _, l := range strings.Split(p, "\n") {
			b.WriteString(escape(l) + "\n")
		}
	}
}

// verbatim writes text unfilled, as the terminal shows it.
func verbatim(b *strings.Builder, text string) {
	b.WriteString(".PP\n.RS 4\n.nf\n")
	for _, l := range strings.Split(text, "\n") {
		b.WriteString(escape(l) + "\n")
	}
	b.WriteString(".fi\n.RE\n")
}

// escape makes a line of text safe for roff.
func escape(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	s = strings.ReplaceAll(s, "\t", "        ")
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	if strings.TrimSpace(s) == "" {
		return ""
	}
	return s
}

func quote(s string) string {
	return `"` + strings.ReplaceAll(escape(s), `"`, `\(dq`) + `"`
}
