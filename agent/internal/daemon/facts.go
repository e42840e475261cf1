package daemon

import (
	"bufio"
	"bytes"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/alize-eple/alize/controller/api"
)

// Facts describes this server: informative only, for the controller's
// inventory.
func Facts(agentVersion string) api.Facts {
	f := api.Facts{AgentVersion: agentVersion, Arch: runtime.GOARCH, OS: osRelease("/etc/os-release")}
	f.Hostname, _ = os.Hostname()
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		f.Kernel = string(bytes.TrimRight(u.Release[:], "\x00"))
	}
	return f
}

// facts is Facts, read once per agent.
func (a *Agent) facts() api.Facts {
	a.factsOnce.Do(func() { a.factsVal = Facts(a.opts.Version) })
	return a.factsVal
}

func osRelease(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return runtime.GOOS
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "PRETTY_NAME="); ok {
			if u, err := strconv.Unquote(v); err == nil {
				return u
			}
			return v
		}
	}
	return runtime.GOOS
}
