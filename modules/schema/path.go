package schema

import "strconv"

// join appends a mapping key to a field path: "spec" + "zones" →
// "spec.zones". A key that is not a plain identifier is quoted:
// spec["a.b"].
func join(p, key string) string {
	if plainKey(key) {
		if p == "" {
			return key
		}
		return p + "." + key
	}
	return p + "[" + strconv.Quote(key) + "]"
}

// index appends a list index to a field path: "spec.zones" → "spec.zones[2]".
func index(p string, i int) string {
	return p + "[" + strconv.Itoa(i) + "]"
}

func plainKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// pathElem is a field path built as a document is read, rendered only
// when a problem needs it.
type pathElem struct {
	parent *pathElem
	key    string
	idx    int // -1 for a key
}

func (p *pathElem) String() string {
	if p == nil {
		return ""
	}
	var elems []*pathElem
	for e := p; e != nil; e = e.parent {
		elems = append(elems, e)
	}
	s := ""
	for i := len(elems) - 1; i >= 0; i-- {
		e := elems[i]
		if e.idx >= 0 {
			s = index(s, e.idx)
		} else {
			s = join(s, e.key)
		}
	}
	return s
}

// renderPath appends steps to a path.
func renderPath(p string, steps []step) string {
	for _, st := range steps {
		if st.idx >= 0 {
			p = index(p, st.idx)
		} else {
			p = join(p, st.key)
		}
	}
	return p
}
