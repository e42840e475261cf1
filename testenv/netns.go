package testenv

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetNS is a fresh network namespace with lo up, owned by one test.
//
// One OS thread lives inside it for the namespace's whole life; Do runs
// functions on that thread, so sockets they open and processes they start
// belong to the namespace. At cleanup the thread exits and the namespace's
// file descriptor is closed: once the processes started in it are gone, the
// kernel frees the namespace with its links, addresses and nftables tables.
type NetNS struct {
	name  string
	fd    int
	inode uint64
	tid   int // the namespace's thread
	calls chan func()
	done  chan struct{}
}

// NewNetNS makes a fresh network namespace with lo up. The name is for
// messages only.
func NewNetNS(t testing.TB, name string) *NetNS {
	t.Helper()
	Require(t, "netns")
	n := &NetNS{name: name, calls: make(chan func()), done: make(chan struct{})}
	ready := make(chan error, 1)
	go n.loop(ready)
	if err := <-ready; err != nil {
		t.Fatalf("testenv: netns %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := n.close(); err != nil {
			t.Errorf("testenv: netns %s: %v", name, err)
		}
	})
	if err := n.linkUp("lo"); err != nil {
		t.Fatalf("testenv: netns %s: lo up: %v", name, err)
	}
	return n
}

// loop is the namespace's thread. It never unlocks the OS thread, so the
// Go runtime destroys the thread when loop returns instead of reusing it
// for other goroutines in the wrong namespace.
//
// The main thread (m0) cannot end: a goroutine locked to it parks it for
// ever, which would keep the namespace alive. When loop lands there, it
// keeps m0 locked while a new loop starts elsewhere, then lets it go.
func (n *NetNS) loop(ready chan<- error) {
	runtime.LockOSThread()
	if unix.Gettid() == unix.Getpid() {
		locked := make(chan error, 1)
		go n.loop(locked)
		ready <- <-locked
		runtime.UnlockOSThread()
		return
	}
	defer close(n.done)
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		ready <- fmt.Errorf("unshare: %w", err)
		return
	}
	fd, err := unix.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		ready <- fmt.Errorf("open ns: %w", err)
		return
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		ready <- fmt.Errorf("stat ns: %w", err)
		return
	}
	n.fd, n.inode, n.tid = fd, st.Ino, unix.Gettid()
	ready <- nil
	for fn := range n.calls {
		fn()
	}
}

func (n *NetNS) close() error {
	close(n.calls)
	<-n.done
	unix.Close(n.fd)
	// The runtime ends the thread just after loop returns: wait for it,
	// so that the namespace is gone when cleanup is over.
	task := fmt.Sprintf("/proc/self/task/%d", n.tid)
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if _, err := os.Stat(task); err != nil {
			return nil
		}
	}
	return fmt.Errorf("thread %d still in the namespace after cleanup", n.tid)
}

// Name is the name given at creation.
func (n *NetNS) Name() string { return n.name }

// FD is an open file descriptor of the namespace, for
// nftables.WithNetNSFd and netlink.NsFd. It is valid until cleanup.
func (n *NetNS) FD() int { return n.fd }

// Inode identifies the namespace (as in `ls -i /proc/PID/ns/net`).
func (n *NetNS) Inode() uint64 { return n.inode }

// Do runs fn on the namespace's thread and returns its error. fn must not
// hand work to other goroutines expecting them to be inside: they are not.
// Sockets fn opens stay in the namespace and may be used from anywhere.
func (n *NetNS) Do(fn func() error) error {
	errc := make(chan error, 1)
	n.calls <- func() { errc <- fn() }
	return <-errc
}

// Start starts cmd inside the namespace.
func (n *NetNS) Start(cmd *exec.Cmd) error {
	return n.Do(cmd.Start)
}

// Run runs cmd inside the namespace and waits for it, returning its
// combined output.
func (n *NetNS) Run(cmd *exec.Cmd) ([]byte, error) {
	var out []byte
	err := n.Do(func() error {
		var err error
		out, err = cmd.CombinedOutput()
		return err
	})
	return out, err
}

// Listen opens a listener inside the namespace.
func (n *NetNS) Listen(network, address string) (net.Listener, error) {
	var l net.Listener
	err := n.Do(func() error {
		var err error
		l, err = net.Listen(network, address)
		return err
	})
	return l, err
}

// DialContext connects from inside the namespace.
func (n *NetNS) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var err error
		var d net.Dialer
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}

// FreePort returns a TCP port free on 127.0.0.1 inside the namespace (or
// on the host when n is nil).
func (n *NetNS) FreePort() (int, error) {
	listen := net.Listen
	if n != nil {
		listen = n.Listen
	}
	l, err := listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// WriteSysctl writes a per-namespace sysctl (e.g. "net/ipv4/ip_forward")
// for this namespace only.
func (n *NetNS) WriteSysctl(key, value string) error {
	return n.Do(func() error {
		return os.WriteFile("/proc/sys/"+key, []byte(value), 0o644)
	})
}

// handle returns a netlink handle bound to the namespace.
func (n *NetNS) handle() (*netlink.Handle, error) {
	return netlink.NewHandleAt(netns.NsHandle(n.fd))
}

func (n *NetNS) linkUp(name string) error {
	h, err := n.handle()
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		return err
	}
	return h.LinkSetUp(l)
}

// AddAddr adds an address (CIDR form, "10.0.1.2/24") to a link of the
// namespace and brings the link up.
func (n *NetNS) AddAddr(link string, prefix netip.Prefix) error {
	h, err := n.handle()
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(link)
	if err != nil {
		return fmt.Errorf("%s: %w", link, err)
	}
	addr, err := netlink.ParseAddr(prefix.String())
	if err != nil {
		return err
	}
	if err := h.AddrAdd(l, addr); err != nil {
		return fmt.Errorf("add %s to %s: %w", prefix, link, err)
	}
	return h.LinkSetUp(l)
}

// AddDefaultRoute routes everything not local through gw.
func (n *NetNS) AddDefaultRoute(gw netip.Addr) error {
	h, err := n.handle()
	if err != nil {
		return err
	}
	defer h.Close()
	return h.RouteAdd(&netlink.Route{Gw: gw.AsSlice()})
}

// Veth links namespace a (interface aName) to namespace b (interface bName)
// with a veth pair. Both ends are up; the pair goes with the namespaces.
func Veth(t testing.TB, a *NetNS, aName string, b *NetNS, bName string) {
	t.Helper()
	h, err := a.handle()
	if err != nil {
		t.Fatalf("testenv: veth %s-%s: %v", aName, bName, err)
	}
	defer h.Close()
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: aName},
		PeerName:      bName,
		PeerNamespace: netlink.NsFd(b.fd),
	}
	if err := h.LinkAdd(veth); err != nil {
		t.Fatalf("testenv: veth %s (%s) - %s (%s): %v", aName, a.name, bName, b.name, err)
	}
	if err := a.linkUp(aName); err != nil {
		t.Fatalf("testenv: veth %s up: %v", aName, err)
	}
	if err := b.linkUp(bName); err != nil {
		t.Fatalf("testenv: veth %s up: %v", bName, err)
	}
}

// Topology is a client network and a server network joined by a router,
// each in its own namespace:
//
//	client (eth0 10.77.1.2/24) ── (lan 10.77.1.1/24) router (wan 10.77.2.1/24) ── (eth0 10.77.2.2/24) server
//
// The router forwards between its interfaces; the client and the server
// route everything through it. Firewall tests load rules into the router.
type Topology struct {
	Client, Router, Server *NetNS

	ClientAddr, RouterLANAddr, RouterWANAddr, ServerAddr netip.Addr
}

// NewTopology builds the client / router / server topology.
func NewTopology(t testing.TB) *Topology {
	t.Helper()
	topo := &Topology{
		Client:        NewNetNS(t, "client"),
		Router:        NewNetNS(t, "router"),
		Server:        NewNetNS(t, "server"),
		ClientAddr:    netip.MustParseAddr("10.77.1.2"),
		RouterLANAddr: netip.MustParseAddr("10.77.1.1"),
		RouterWANAddr: netip.MustParseAddr("10.77.2.1"),
		ServerAddr:    netip.MustParseAddr("10.77.2.2"),
	}
	Veth(t, topo.Client, "eth0", topo.Router, "lan")
	Veth(t, topo.Server, "eth0", topo.Router, "wan")
	steps := []struct {
		what string
		err  error
	}{
		{"client address", topo.Client.AddAddr("eth0", netip.PrefixFrom(topo.ClientAddr, 24))},
		{"router lan address", topo.Router.AddAddr("lan", netip.PrefixFrom(topo.RouterLANAddr, 24))},
		{"router wan address", topo.Router.AddAddr("wan", netip.PrefixFrom(topo.RouterWANAddr, 24))},
		{"server address", topo.Server.AddAddr("eth0", netip.PrefixFrom(topo.ServerAddr, 24))},
		{"client route", topo.Client.AddDefaultRoute(topo.RouterLANAddr)},
		{"server route", topo.Server.AddDefaultRoute(topo.RouterWANAddr)},
		{"router forwarding", topo.Router.WriteSysctl("net/ipv4/ip_forward", "1")},
	}
	for _, s := range steps {
		if s.err != nil {
			t.Fatalf("testenv: topology: %s: %v", s.what, s.err)
		}
	}
	return topo
}
