package accounts

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"

	"github.com/go-ldap/ldap/v3"
)

// pool is a few connections to the directory, bound as the kind's DN,
// for one Plan or Apply. Each connection carries several operations at a
// time (go-ldap multiplexes them).
type pool struct {
	conns []*ldap.Conn
	stop  func() bool
	once  sync.Once
}

// target is a directory to bind to.
type target struct {
	url, bindDN string
	password    Secret
}

// directory returns where the directory is: the spec's ldap section when it
// has one, else the kind's Config.
func (k *Accounts) directory(s *Spec) (target, error) {
	t := target{url: k.cfg.URL, bindDN: k.cfg.BindDN, password: k.cfg.BindPassword}
	if s != nil && s.LDAP != nil {
		if s.LDAP.URL != "" {
			t.url = s.LDAP.URL
		}
		if s.LDAP.BindDN != "" {
			t.bindDN = s.LDAP.BindDN
		}
		if ref := s.LDAP.BindPassword; ref != "" {
			if k.cfg.Secrets == nil {
				return t, fmt.Errorf("accounts: ldap.bind_password: the kind has no secrets to resolve %s", ref)
			}
			pw, err := k.cfg.Secrets(ref)
			if err != nil {
				return t, fmt.Errorf("accounts: ldap.bind_password %s: %w", ref, err)
			}
			t.password = pw
		}
	}
	switch {
	case t.url == "":
		return t, errors.New("accounts: no directory URL: set ldap.url in the spec or URL in the agent's configuration")
	case t.bindDN == "" || t.password == nil:
		return t, errors.New("accounts: no bind DN or password: set ldap in the spec or in the agent's configuration")
	}
	return t, nil
}

// connect opens n connections to the directory s names (nil: the
// Config's), bound. They close when ctx ends or when the pool is closed.
func (k *Accounts) connect(ctx context.Context, s *Spec, n int) (*pool, error) {
	t, err := k.directory(s)
	if err != nil {
		return nil, err
	}
	p := &pool{}
	for range n {
		c, err := k.dial(ctx, t)
		if err != nil {
			p.close()
			return nil, err
		}
		p.conns = append(p.conns, c)
	}
	p.stop = context.AfterFunc(ctx, func() { p.closeConns() })
	return p, nil
}

func (p *pool) close() {
	if p.stop != nil {
		p.stop()
	}
	p.closeConns()
}

func (p *pool) closeConns() {
	p.once.Do(func() {
		for _, c := range p.conns {
			c.Close()
		}
	})
}

// conn returns the i-th connection, round robin.
func (p *pool) conn(i int) *ldap.Conn { return p.conns[i%len(p.conns)] }

func (k *Accounts) dial(ctx context.Context, t target) (*ldap.Conn, error) {
	u, err := url.Parse(t.url)
	if err != nil || (u.Scheme != "ldap" && u.Scheme != "ldaps") || u.Host == "" {
		return nil, fmt.Errorf("accounts: directory URL %q: must be ldap://host[:port] or ldaps://host[:port]", t.url)
	}
	host := u.Host
	if u.Port() == "" {
		port := "389"
		if u.Scheme == "ldaps" {
			port = "636"
		}
		host = net.JoinHostPort(u.Hostname(), port)
	}
	raw, err := k.cfg.Dial(ctx, "tcp", host)
	if err != nil {
		return nil, fmt.Errorf("accounts: connect to %s: %w (is slapd running?)", t.url, err)
	}
	isTLS := u.Scheme == "ldaps"
	if isTLS {
		conf := k.cfg.TLS
		if conf == nil {
			conf = &tls.Config{}
		}
		conf = conf.Clone()
		if conf.ServerName == "" {
			conf.ServerName = u.Hostname()
		}
		tc := tls.Client(raw, conf)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, fmt.Errorf("accounts: tls to %s: %w", t.url, err)
		}
		raw = tc
	}
	c := ldap.NewConn(raw, isTLS)
	c.Start()
	pw := t.password.Reveal()
	err = c.Bind(t.bindDN, string(pw))
	clear(pw)
	if err != nil {
		c.Close()
		if ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
			return nil, fmt.Errorf("accounts: bind as %s to %s: wrong DN or password (check the directory's bind secret)", t.bindDN, t.url)
		}
		return nil, fmt.Errorf("accounts: bind as %s to %s: %w", t.bindDN, t.url, describe(err))
	}
	return c, nil
}

// OpError is an LDAP operation the directory refused, in words: the
// operation, the entry, the reason and what to do.
type OpError struct {
	Op     string // "add", "modify", "move", "search"
	DN     string
	Code   uint16 // LDAP result code
	Reason string
	Err    error
}

func (e *OpError) Error() string { return e.Op + " " + e.DN + ": " + e.Reason }
func (e *OpError) Unwrap() error { return e.Err }

// opError makes an LDAP error a clear message.
func opError(op, dn string, err error) error {
	var le *ldap.Error
	if !errors.As(err, &le) {
		return &OpError{Op: op, DN: dn, Reason: err.Error(), Err: err}
	}
	return &OpError{Op: op, DN: dn, Code: le.ResultCode, Reason: describe(err).Error(), Err: err}
}

// describe turns an LDAP error into its reason and a hint.
func describe(err error) error {
	var le *ldap.Error
	if !errors.As(err, &le) {
		return err
	}
	msg := ""
	if le.Err != nil {
		msg = strings.TrimSpace(le.Err.Error())
	}
	name := strings.ToLower(ldap.LDAPResultCodeMap[le.ResultCode])
	if name == "" {
		name = fmt.Sprintf("result %d", le.ResultCode)
	}
	reason := name
	if msg != "" {
		reason += ": " + msg
	}
	switch le.ResultCode {
	case ldap.LDAPResultInsufficientAccessRights:
		reason += " (the bind DN may not write there: check the directory's ACLs)"
	case ldap.LDAPResultObjectClassViolation, ldap.LDAPResultUndefinedAttributeType:
		reason += " (a schema the kind needs may be missing: nis, inetorgperson, samba)"
	case ldap.LDAPResultNoSuchObject:
		reason += " (the entry or its parent OU is missing)"
	case ldap.LDAPResultEntryAlreadyExists:
		reason += " (another entry has that name)"
	case ldap.LDAPResultInvalidAttributeSyntax:
		reason += " (a value the directory refuses)"
	case ldap.ErrorNetwork:
		reason += " (the connection to the directory was lost)"
	}
	return errors.New(reason)
}

// permissive is the permissive modify control (OpenLDAP supports it):
// adding a value that is there, or deleting one that is not, succeeds, so
// that a membership change applied twice is harmless.
func permissive() []ldap.Control {
	return []ldap.Control{ldap.NewControlString("1.2.840.113556.1.4.1413", false, "")}
}
