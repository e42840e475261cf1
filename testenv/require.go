package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// SystestEnv is the environment variable `make test` sets: with it, a
// missing part fails the test instead of skipping it.
const SystestEnv = "ALIZE_SYSTEST"

// parts maps each part a test may require to how its presence is checked.
var parts = map[string]func() error{
	"root":        needRoot,
	"netns":       needAll(needRoot, needBinary("ip")),
	"nft":         needAll(needRoot, needBinary("nft")),
	"slapd":       needAll(needBinary("slapd"), needBinary("slapadd"), needFile(schemaDir+"/core.schema"), needFile(sambaSchema)),
	"ldap-utils":  needAll(needBinary("ldapsearch"), needBinary("ldapadd")),
	"smbd":        needAll(needRoot, needBinary("smbd"), needBinary("smbpasswd"), needBinary("smbcontrol"), needNSSWrapper),
	"samba-vfs":   needGlob("/usr/lib/*/samba/vfs/recycle.so", "samba-vfs-modules"),
	"acl":         needAll(needBinary("getfacl"), needBinary("setfacl")),
	"testparm":    needBinary("testparm"),
	"smbclient":   needBinary("smbclient"),
	"postgres":    needAll(needRoot, needBinary("runuser"), needFile(pgBinDir+"/initdb"), needFile(pgBinDir+"/pg_ctl"), needUser("postgres")),
	"dbus-daemon": needBinary("dbus-daemon"),
	"debbuild":    needAll(needRoot, needBinary("dpkg-buildpackage"), needBinary("dh"), needBinary("lintian"), needBinary("systemd-analyze"), needBinary("git")),
	"systemd-ns":  needAll(needRoot, needFile("/lib/systemd/systemd"), needBinary("unshare"), needBinary("nsenter"), needBinary("systemctl")),
}

// Require checks that every named part is present on this machine. When one
// is missing the test is skipped, or fails under ALIZE_SYSTEST=1.
//
// Parts: root, netns, nft, slapd, ldap-utils, smbd, samba-vfs, acl,
// testparm, smbclient, postgres, dbus-daemon, debbuild, systemd-ns. An unknown name is a bug in the test and always
// fails.
func Require(t testing.TB, names ...string) {
	t.Helper()
	var missing []string
	for _, n := range names {
		check, ok := parts[n]
		if !ok {
			t.Fatalf("testenv.Require: unknown part %q (known: %s)", n, strings.Join(knownParts(), ", "))
		}
		if err := check(); err != nil {
			missing = append(missing, fmt.Sprintf("%s (%v)", n, err))
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "missing real parts: " + strings.Join(missing, "; ") + "; install them with testenv/install-deps.sh as root"
	if Systest() {
		t.Fatalf("%s [%s=1: a missing part is a failure]", msg, SystestEnv)
	}
	t.Skip(msg)
}

// Systest reports whether the tests run under `make test`, where every
// real part must be present.
func Systest() bool { return os.Getenv(SystestEnv) == "1" }

func knownParts() []string {
	names := make([]string, 0, len(parts))
	for n := range parts {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func needRoot() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root, running as uid %d", os.Geteuid())
	}
	return nil
}

func needBinary(name string) func() error {
	return func() error {
		_, err := lookPath(name)
		return err
	}
}

func needFile(path string) func() error {
	return func() error {
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("no %s", path)
		}
		return nil
	}
}

func needGlob(pattern, pkg string) func() error {
	return func() error {
		if m, _ := filepath.Glob(pattern); len(m) == 0 {
			return fmt.Errorf("no %s (Debian package %s)", pattern, pkg)
		}
		return nil
	}
}

func needUser(name string) func() error {
	return func() error {
		if _, err := lookupUser(name); err != nil {
			return err
		}
		return nil
	}
}

func needAll(checks ...func() error) func() error {
	return func() error {
		for _, c := range checks {
			if err := c(); err != nil {
				return err
			}
		}
		return nil
	}
}

// lookPath finds a binary in PATH or in the sbin directories, which a
// non-login shell's PATH may lack.
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := dir + "/" + name
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}
