package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/coreos/go-systemd/v22/journal"
	"github.com/google/nftables"
)

// newLogger logs to the journal, with its fields, when the daemon's
// stderr is the journal; to stderr as text otherwise.
func newLogger(stderr io.Writer, level slog.Level, daemonMode bool) *slog.Logger {
	if daemonMode && stderr == os.Stderr && journal.Enabled() {
		if ok, _ := journal.StderrIsJournalStream(); ok {
			return slog.New(&journalHandler{level: level})
		}
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
}

// journalHandler sends records to journald: the message, its priority,
// and each attribute as a field (kind=firewall → ALIZE_KIND=firewall,
// searchable with journalctl ALIZE_KIND=firewall).
type journalHandler struct {
	level  slog.Level
	attrs  []slog.Attr
	prefix string
}

func (h *journalHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *journalHandler) Handle(_ context.Context, r slog.Record) error {
	vars := map[string]string{"SYSLOG_IDENTIFIER": "alize"}
	var text strings.Builder
	text.WriteString(r.Message)
	add := func(a slog.Attr) {
		key := h.prefix + a.Key
		val := a.Value.Resolve().String()
		vars["ALIZE_"+fieldName(key)] = val
		fmt.Fprintf(&text, " %s=%q", key, val)
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(func(a slog.Attr) bool { add(a); return true })
	return journal.Send(text.String(), priority(r.Level), vars)
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &n
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	n := *h
	n.prefix = h.prefix + name + "."
	return &n
}

func priority(l slog.Level) journal.Priority {
	switch {
	case l >= slog.LevelError:
		return journal.PriErr
	case l >= slog.LevelWarn:
		return journal.PriWarning
	case l >= slog.LevelInfo:
		return journal.PriInfo
	}
	return journal.PriDebug
}

// fieldName makes a journal field name of a key: upper case, letters,
// digits and underscores.
func fieldName(key string) string {
	var b strings.Builder
	for _, c := range strings.ToUpper(key) {
		if c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// notifySystemd sends sd_notify messages when systemd listens
// (NOTIFY_SOCKET), nothing otherwise.
func notifySystemd(log *slog.Logger) func(string) {
	return func(state string) {
		if _, err := daemon.SdNotify(false, state); err != nil {
			log.Debug("sd_notify failed", "err", err)
		}
	}
}

// firewallTable reports whether the firewall kind's table (family inet)
// is present, over netlink.
func firewallTable(name string) func(context.Context) (bool, error) {
	return func(context.Context) (bool, error) {
		c, err := nftables.New()
		if err != nil {
			return false, err
		}
		tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
		if err != nil {
			return false, err
		}
		for _, t := range tables {
			if t.Name == name {
				return true, nil
			}
		}
		return false, nil
	}
}
