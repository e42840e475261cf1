package shares

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/alize-eple/alize/testenv"
)

// spec100 is 100 shares, each provisioning its directory, with comment c.
func spec100(c string) Spec {
	values := make([]string, 100)
	for i := range values {
		values[i] = fmt.Sprintf("s%03d", i)
	}
	return Spec{Shares: []Share{{
		Name: "{s}", Path: "/srv/{s}", Comment: c + " {s}",
		Read: []string{"eleves"}, Write: []string{"professeurs"}, HideUnreadable: true,
		Directory: &Ownership{Group: "professeurs", Mode: "2775"},
		ForEach:   &ForEach{Var: "s", Values: values},
	}}}
}

// BenchmarkSharesApply100 changes the comment of 100 shares and applies
// it: plan, render, testparm, atomic replace and smbd's reload, for real.
// Target: under 500 ms.
func BenchmarkSharesApply100(b *testing.B) {
	srv := startServer(b, testenv.SmbdOptions{Users: scribeUsers, Groups: scribeGroups})
	converge(b, srv.kind, spec100("v"))
	specs := [2]Spec{spec100("a"), spec100("b")}
	ctx := context.Background()
	b.ResetTimer()
	defer reportCPU(b)()
	for i := 0; i < b.N; i++ {
		p, err := srv.kind.Plan(ctx, specs[i%2])
		if err != nil {
			b.Fatal(err)
		}
		if len(p.Changes) != 100 {
			b.Fatalf("plan of %d changes, want 100", len(p.Changes))
		}
		res, err := srv.kind.Apply(ctx, p)
		if err != nil || res.Failed() {
			b.Fatalf("Apply: %v\n%s", err, results(res))
		}
	}
}

// BenchmarkAnchorTestparm100 is testparm alone on the configuration of
// BenchmarkSharesApply100: the floor of its check.
func BenchmarkAnchorTestparm100(b *testing.B) {
	srv := startServer(b, testenv.SmbdOptions{Users: scribeUsers, Groups: scribeGroups})
	converge(b, srv.kind, spec100("v"))
	b.ResetTimer()
	defer reportCPU(b)()
	for i := 0; i < b.N; i++ {
		if out, err := exec.Command("testparm", "-s", srv.Conf).CombinedOutput(); err != nil {
			b.Fatalf("testparm: %v\n%s", err, out)
		}
	}
}

// BenchmarkAnchorReload100 is smbcontrol reload-config alone with 100
// shares: the reload the kind falls back to when no smbd is found by its
// pid file (it sends SIGHUP otherwise, which costs no process).
func BenchmarkAnchorReload100(b *testing.B) {
	srv := startServer(b, testenv.SmbdOptions{Users: scribeUsers, Groups: scribeGroups})
	converge(b, srv.kind, spec100("v"))
	ctx := context.Background()
	b.ResetTimer()
	defer reportCPU(b)()
	for i := 0; i < b.N; i++ {
		if err := srv.Reload(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// school2000 is an offline server with 2,000 pupils, their homes and 100
// shares, converged.
func school2000(b *testing.B) (*offlineRoot, Spec) { return school2000Test(b) }

func school2000Test(b testing.TB) (*offlineRoot, Spec) {
	var passwd, members strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&passwd, "eleve%04d:x:%d:%d::/nonexistent:/bin/false\n", i, 10000+i, 10000+i)
		if i > 0 {
			members.WriteString(",")
		}
		fmt.Fprintf(&members, "eleve%04d", i)
	}
	o := newOfflineRoot(b, passwd.String(), "eleves:x:5000:"+members.String()+"\nprofesseurs:x:5001:\n")
	spec := spec100("v")
	spec.Homes = &Homes{Root: "/home", Groups: []string{"eleves"}, Share: &Share{Name: "perso"}}
	converge(b, o.kind, spec)
	return o, spec
}

// BenchmarkSharesPlanNoChange plans a converged server of 100 shares and
// 2,000 home directories: the include, smb.conf, NSS (getent) and every
// directory's owner, mode and ACLs are read. Target: under 100 ms.
func BenchmarkSharesPlanNoChange(b *testing.B) {
	o, spec := school2000(b)
	ctx := context.Background()
	b.ResetTimer()
	defer reportCPU(b)()
	for i := 0; i < b.N; i++ {
		p, err := o.kind.Plan(ctx, spec)
		if err != nil {
			b.Fatal(err)
		}
		if !p.Empty() {
			b.Fatalf("plan of a converged server: %v", p.Changes)
		}
	}
}

// BenchmarkAnchorStat2100 opens, stats and reads the ACL xattrs of the
// same 2,100 directories with bare system calls: the floor of the plan's
// observation.
func BenchmarkAnchorStat2100(b *testing.B) {
	o, _ := school2000(b)
	var dirs []string
	for _, top := range []string{"home", "srv"} {
		matches, _ := filepath.Glob(filepath.Join(o.root, top, "*"))
		dirs = append(dirs, matches...)
	}
	if len(dirs) != 2100 {
		b.Fatalf("%d directories, want 2100", len(dirs))
	}
	buf := make([]byte, 256)
	b.ResetTimer()
	defer reportCPU(b)()
	for i := 0; i < b.N; i++ {
		for _, d := range dirs {
			fd, err := unix.Open(d, dirFlags|unix.O_NOFOLLOW, 0)
			if err != nil {
				b.Fatal(err)
			}
			var st unix.Stat_t
			_ = unix.Fstat(fd, &st)
			_, _ = unix.Fgetxattr(fd, xattrAccess, buf)
			_, _ = unix.Fgetxattr(fd, xattrDefault, buf)
			unix.Close(fd)
		}
	}
}

// BenchmarkAnchorGetent2000 resolves the 2,000 pupils with one getent run
// under nss_wrapper, as the plan does.
func BenchmarkAnchorGetent2000(b *testing.B) {
	o, _ := school2000(b)
	names := make([]string, 2000)
	for i := range names {
		names[i] = fmt.Sprintf("eleve%04d", i)
	}
	ctx := context.Background()
	b.ResetTimer()
	defer reportCPU(b)()
	for i := 0; i < b.N; i++ {
		users, err := o.kind.lookupUsers(ctx, names, nil)
		if err != nil || len(users) != 2000 {
			b.Fatalf("lookupUsers: %d users, %v", len(users), err)
		}
	}
}

// reportCPU reports, when the returned func runs, the CPU time per op
// used since by the benchmark's process and the children it waited for
// (testparm, getent, smbcontrol): on a shared, loaded machine a steadier
// figure than the wall clock. smbd's own work is not in it.
func reportCPU(b *testing.B) func() {
	start := cpuTime()
	return func() {
		b.ReportMetric(float64(cpuTime()-start)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
	}
}

func cpuTime() time.Duration {
	var t time.Duration
	for _, who := range []int{unix.RUSAGE_SELF, unix.RUSAGE_CHILDREN} {
		var ru unix.Rusage
		if unix.Getrusage(who, &ru) == nil {
			t += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	return t
}
