package shares

// Spec is the desired state of a server's Samba shares. It is the wire
// format: the compiled module spec is JSON decoded strictly into it.
// An omitted part means "don't manage", never "delete": only share
// sections of Alizé's include file are ever removed, never a directory.
type Spec struct {
	// Shares are the share sections of the include file, in this order.
	// With neither shares nor a home share the include file (and
	// smb.conf's line) is not managed; "shares: []" empties it.
	Shares []Share `json:"shares"`
	// Directories are provisioned with owner, group, mode and ACL, beside
	// the ones a share provisions for its own path.
	Directories []Directory `json:"directories,omitempty"`
	// Homes gives every member of some groups a home directory and,
	// optionally, a share that shows each user their own.
	Homes *Homes `json:"homes,omitempty"`
}

// Share is one Samba share section.
type Share struct {
	// Name of the share as clients see it: letters, digits, '.', '_',
	// '-', an optional final '$' (a hidden share), 80 characters at most.
	Name string `json:"name"`
	// Path is the shared directory, absolute, under an allowed root.
	Path    string `json:"path"`
	Comment string `json:"comment,omitempty"`
	// Read and Write are the groups whose members may read, and write;
	// ReadUsers and WriteUsers name single users. Writers may also
	// read. A share names at least one reader or writer: nobody else
	// may connect. The file system still decides inside the share.
	Read       []string `json:"read,omitempty"`
	Write      []string `json:"write,omitempty"`
	ReadUsers  []string `json:"read_users,omitempty"`
	WriteUsers []string `json:"write_users,omitempty"`
	// ReadOnly makes the share read-only for everyone, writers included
	// (for instance during an exam), keeping them as readers.
	ReadOnly bool `json:"read_only,omitempty"`
	// Browseable lists the share when clients browse the server; true
	// when omitted.
	Browseable *bool `json:"browseable,omitempty"`
	// CreateMask and DirectoryMask are octal ("0660", "0770"); Samba's
	// defaults when omitted.
	CreateMask    string `json:"create_mask,omitempty"`
	DirectoryMask string `json:"directory_mask,omitempty"`
	// HideUnreadable hides the files and folders a user cannot read.
	HideUnreadable bool `json:"hide_unreadable,omitempty"`
	// Recycle, when set, keeps deleted files in a recycle bin folder at
	// the root of the share (Samba's vfs_recycle, Debian package
	// samba-vfs-modules).
	Recycle *Recycle `json:"recycle,omitempty"`
	// VetoFiles are file name patterns (with * and ?) clients can
	// neither see nor create: "*.exe", "Thumbs.db".
	VetoFiles []string `json:"veto_files,omitempty"`
	// Directory, when set, provisions the share's path.
	Directory *Ownership `json:"directory,omitempty"`
	// ForEach repeats the share once per value; "{var}" in its name,
	// path, comment, names of users and groups is replaced by the value.
	ForEach *ForEach `json:"for_each,omitempty"`
}

// Recycle is a share's recycle bin.
type Recycle struct {
	// Repository is the bin's folder name at the share's root;
	// ".corbeille" when omitted.
	Repository string `json:"repository,omitempty"`
}

// Directory is a directory the kind provisions. Missing parents are
// created root:root 0755. A provisioned directory is never deleted.
type Directory struct {
	Path string `json:"path"`
	Ownership
	// ForEach repeats the directory once per value, as for a share.
	ForEach *ForEach `json:"for_each,omitempty"`
}

// Ownership is who owns a directory and who may do what in it.
type Ownership struct {
	// Owner and Group are names (resolved through NSS on the server) or
	// numeric ids; root when omitted.
	Owner string `json:"owner,omitempty"`
	Group string `json:"group,omitempty"`
	// Mode is octal with its special bits ("2770": setgid); "0755" when
	// omitted. With an ACL, the group bits are the owning group's.
	Mode string `json:"mode,omitempty"`
	// ACL adds named users and groups to the directory's POSIX ACL. The
	// same entries go into its default ACL, so that what is created
	// inside inherits them. Without ACL entries a directory has no ACL:
	// one added by hand is drift, and removed.
	ACL []ACLEntry `json:"acl,omitempty"`
}

// ACLEntry gives one user or one group permissions on a directory.
type ACLEntry struct {
	User  string `json:"user,omitempty"`
	Group string `json:"group,omitempty"`
	// Perms as getfacl writes them: "rwx", "r-x", "---".
	Perms string `json:"perms"`
}

// ForEach repeats a share or a directory: once per value, "{var}" is
// replaced by the value. Values are names: letters, digits, '.', '_',
// '-'. No value, no copy.
type ForEach struct {
	Var    string   `json:"var"`    // "class"
	Values []string `json:"values"` // ["3a", "3b"]
}

// Homes are the users' home directories: Root/<login> for every member of
// Groups and every one of Users, owned by the user and their primary
// group. A home is created when missing and its owner and mode are kept;
// it is never deleted, even when its user leaves (an archived user's home
// stays where it is).
type Homes struct {
	Root   string   `json:"root"`            // "/home"
	Groups []string `json:"groups"`          // ["eleves", "professeurs"]
	Users  []string `json:"users,omitempty"` // single users
	// Mode of each home; "0700" when omitted.
	Mode string `json:"mode,omitempty"`
	// Share, when set, is the share that shows every user their own home
	// (Scribe's "perso"): its path is Root/%u and its users the home
	// groups and users, so Path, Read, Write, ReadUsers, WriteUsers,
	// ReadOnly, Directory and ForEach must stay empty. Browseable is false
	// when omitted.
	Share *Share `json:"share,omitempty"`
}
