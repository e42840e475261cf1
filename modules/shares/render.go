package shares

import (
	"bytes"
	"path/filepath"
	"strings"
)

// header opens the include file. It is only comments, so the file may be
// included anywhere in smb.conf.
const header = `# Written by Alizé (shares kind) from the server's manifest.
# Do not edit: any change made here is reported as drift and undone.
`

// render writes the include file for m, with every path under root (the
// kind's root: "/" on a server).
func render(m model, root string) []byte {
	var b bytes.Buffer
	b.WriteString(header)
	for _, sh := range m.shares {
		b.WriteString("\n")
		renderShare(&b, sh, root)
	}
	return b.Bytes()
}

func renderShare(b *bytes.Buffer, sh shareModel, root string) {
	param := func(k, v string) {
		b.WriteString("\t")
		b.WriteString(k)
		b.WriteString(" = ")
		b.WriteString(v)
		b.WriteString("\n")
	}
	yes := func(v bool) string {
		if v {
			return "yes"
		}
		return "no"
	}
	b.WriteString("[" + sh.name + "]\n")
	if sh.comment != "" {
		param("comment", sh.comment)
	}
	if sh.homesRoot != "" {
		// %u is the user the session runs as: each user sees their own home.
		param("path", strings.TrimSuffix(filepath.Join(root, sh.homesRoot), "/")+"/%u")
	} else {
		param("path", filepath.Join(root, sh.path))
	}
	param("browseable", yes(sh.browseable))
	param("guest ok", "no")
	param("read only", yes(sh.homesRoot == "" || sh.readOnly))
	param("valid users", strings.Join(sh.valid, " "))
	if len(sh.write) > 0 && sh.homesRoot == "" {
		param("write list", strings.Join(sh.write, " "))
	}
	if sh.createMask != "" {
		param("create mask", sh.createMask)
	}
	if sh.dirMask != "" {
		param("directory mask", sh.dirMask)
	}
	if sh.inherit {
		param("inherit acls", "yes")
	}
	if sh.hide {
		param("hide unreadable", "yes")
	}
	if len(sh.veto) > 0 {
		param("veto files", "/"+strings.Join(sh.veto, "/")+"/")
	}
	if sh.recycle != "" {
		param("vfs objects", "recycle")
		param("recycle:repository", sh.recycle)
		param("recycle:keeptree", "yes")
		param("recycle:versions", "yes")
	}
}

// section is one [name] of a Samba configuration file as written.
type section struct {
	name   string
	text   string  // its lines, header included
	params []param // in order, keys normalised
}

type param struct{ key, value string }

// logicalLine is a line of a Samba configuration file once continuation
// lines ("\" at the end) are joined; start and end are byte offsets of
// its physical lines, end after the last newline.
type logicalLine struct {
	text       string
	start, end int
}

func logicalLines(data []byte) []logicalLine {
	var out []logicalLine
	var cur strings.Builder
	start := 0
	for i := 0; i < len(data); {
		j := bytes.IndexByte(data[i:], '\n')
		next := len(data)
		line := data[i:]
		if j >= 0 {
			next = i + j + 1
			line = data[i : i+j]
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if t := bytes.TrimRight(line, " \t"); len(t) > 0 && t[len(t)-1] == '\\' {
			cur.Write(t[:len(t)-1])
			i = next
			continue
		}
		cur.Write(line)
		out = append(out, logicalLine{text: cur.String(), start: start, end: next})
		cur.Reset()
		i, start = next, next
	}
	if cur.Len() > 0 {
		out = append(out, logicalLine{text: cur.String(), start: start, end: len(data)})
	}
	return out
}

// lineKind tells a section header, a parameter and the rest apart.
func lineKind(text string) (kind byte, name, key, value string) {
	t := strings.TrimSpace(text)
	switch {
	case t == "" || t[0] == '#' || t[0] == ';':
		return 0, "", "", ""
	case t[0] == '[':
		end := strings.IndexByte(t, ']')
		if end < 0 {
			return 0, "", "", ""
		}
		return '[', strings.TrimSpace(t[1:end]), "", ""
	}
	k, v, ok := strings.Cut(t, "=")
	if !ok {
		return 0, "", "", ""
	}
	return '=', "", normKey(k), strings.TrimSpace(v)
}

// normKey lower-cases a parameter name and squeezes its spaces, as Samba
// matches names.
func normKey(k string) string {
	return strings.Join(strings.Fields(strings.ToLower(k)), " ")
}

// parseSections splits a Samba configuration file into its sections;
// what comes before the first one is not returned.
func parseSections(data []byte) []section {
	var out []section
	for _, l := range logicalLines(data) {
		kind, name, key, value := lineKind(l.text)
		switch {
		case kind == '[':
			out = append(out, section{name: name})
		case len(out) == 0:
			continue
		case kind == '=':
			s := &out[len(out)-1]
			s.params = append(s.params, param{key, value})
		}
		out[len(out)-1].text += string(data[l.start:l.end])
	}
	return out
}

// hasInclude reports whether smb.conf has an active line including path.
func hasInclude(conf []byte, path string) bool {
	for _, l := range logicalLines(conf) {
		if kind, _, key, value := lineKind(l.text); kind == '=' && key == "include" && unquote(value) == path {
			return true
		}
	}
	return false
}

func unquote(v string) string {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		return v[1 : len(v)-1]
	}
	return v
}

// withInclude returns smb.conf with "include = path" added at the end of
// its [global] section (or before its first section when it has no
// [global]), every other byte as it was.
func withInclude(conf []byte, path string) []byte {
	lines := logicalLines(conf)
	at := -1 // byte offset to insert at
	global := -1
	for i, l := range lines {
		if kind, name, _, _ := lineKind(l.text); kind == '[' && strings.EqualFold(name, "global") {
			global = i
			break
		}
	}
	if global >= 0 {
		// After the last parameter of the first [global].
		at = lines[global].end
		for _, l := range lines[global+1:] {
			kind, _, _, _ := lineKind(l.text)
			if kind == '[' {
				break
			}
			if kind == '=' {
				at = l.end
			}
		}
	} else {
		// After the global parameters before the first section, or
		// before that section.
		for _, l := range lines {
			kind, _, _, _ := lineKind(l.text)
			if kind == '[' {
				if at < 0 {
					at = l.start
				}
				break
			}
			if kind == '=' {
				at = l.end
			}
		}
		if at < 0 {
			at = len(conf)
		}
	}
	var b bytes.Buffer
	b.Grow(len(conf) + len(path) + 16)
	b.Write(conf[:at])
	if at > 0 && conf[at-1] != '\n' {
		b.WriteString("\n")
	}
	b.WriteString("\tinclude = " + path + "\n")
	b.Write(conf[at:])
	return b.Bytes()
}

// replaceInclude returns smb.conf with the value of its include line for
// from set to to: the candidate smb.conf that testparm checks.
func replaceInclude(conf []byte, from, to string) []byte {
	var b bytes.Buffer
	for _, l := range logicalLines(conf) {
		if kind, _, key, value := lineKind(l.text); kind == '=' && key == "include" && unquote(value) == from {
			b.WriteString("\tinclude = " + to + "\n")
			continue
		}
		b.Write(conf[l.start:l.end])
	}
	return b.Bytes()
}
