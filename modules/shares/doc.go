// Package shares is the shares kind: Samba file shares, the directories
// behind them and the users' home directories, as a school server's
// file server (EOLE Scribe's perso, commun, classes, groupes, devoirs).
//
// The kind owns one include file (by default /etc/samba/alize-shares.conf)
// and the one line of smb.conf that includes it; nothing else in smb.conf
// is touched. A new include is written beside the live one, checked with
// testparm in the context of the live smb.conf (an unknown parameter on
// testparm's stderr is an error, although testparm exits 0), then renamed
// over the live one and smbd is told to reload; when the reload fails the
// previous file comes back. Directories get their owner, group, mode and
// POSIX ACLs (written as the kernel's xattrs, no setfacl needed); home
// directories are created for every member of the home groups and never
// deleted. Names and paths that could inject Samba configuration are
// refused by Validate, which the controller runs before it signs.
//
// Who may import it: the agent (to apply) and the controller (to validate
// specs through modules.CheckerFor). It imports modules and the standard
// library, plus golang.org/x/sys/unix for the file system calls.
package shares
