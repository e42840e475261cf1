package shares

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// The kernel's POSIX ACL xattrs (linux/posix_acl_xattr.h): a little-endian
// header with version 2, then entries of tag, permissions and id, sorted
// by tag then id.
const (
	xattrAccess  = "system.posix_acl_access"
	xattrDefault = "system.posix_acl_default"

	aclVersion = 2

	tagUserObj  = 0x01
	tagUser     = 0x02
	tagGroupObj = 0x04
	tagGroup    = 0x08
	tagMask     = 0x10
	tagOther    = 0x20

	undefinedID = 0xffffffff
)

// aclEntry is one entry of a POSIX ACL.
type aclEntry struct {
	tag   uint16
	perms uint16
	id    uint32
}

// acl is a full POSIX ACL, in the kernel's order.
type acl []aclEntry

// newACL is the ACL of a directory with this mode and named entries: the
// owner, group and other entries come from the mode, the mask is the
// union of the group class.
func newACL(mode uint32, users, groups map[uint32]uint16) acl {
	a := acl{{tag: tagUserObj, perms: uint16(mode>>6) & 7, id: undefinedID}}
	mask := uint16(mode>>3) & 7
	for _, id := range sortedKeys(users) {
		a = append(a, aclEntry{tag: tagUser, perms: users[id], id: id})
		mask |= users[id]
	}
	a = append(a, aclEntry{tag: tagGroupObj, perms: uint16(mode>>3) & 7, id: undefinedID})
	for _, id := range sortedKeys(groups) {
		a = append(a, aclEntry{tag: tagGroup, perms: groups[id], id: id})
		mask |= groups[id]
	}
	a = append(a, aclEntry{tag: tagMask, perms: mask, id: undefinedID},
		aclEntry{tag: tagOther, perms: uint16(mode) & 7, id: undefinedID})
	return a
}

func sortedKeys(m map[uint32]uint16) []uint32 {
	keys := make([]uint32, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// mask is the ACL's mask entry, which the mode's group bits show.
func (a acl) mask() uint16 {
	for _, e := range a {
		if e.tag == tagMask {
			return e.perms
		}
	}
	return 0
}

// encode returns the xattr value the kernel expects.
func (a acl) encode() []byte {
	b := make([]byte, 4, 4+8*len(a))
	binary.LittleEndian.PutUint32(b, aclVersion)
	for _, e := range a {
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.perms)
		b = binary.LittleEndian.AppendUint32(b, e.id)
	}
	return b
}

// decodeACL parses an ACL xattr value.
func decodeACL(b []byte) (acl, error) {
	if len(b) < 4 || (len(b)-4)%8 != 0 {
		return nil, fmt.Errorf("ACL xattr of %d bytes", len(b))
	}
	if v := binary.LittleEndian.Uint32(b); v != aclVersion {
		return nil, fmt.Errorf("ACL xattr version %d, want %d", v, aclVersion)
	}
	a := make(acl, 0, (len(b)-4)/8)
	for i := 4; i < len(b); i += 8 {
		a = append(a, aclEntry{
			tag:   binary.LittleEndian.Uint16(b[i:]),
			perms: binary.LittleEndian.Uint16(b[i+2:]),
			id:    binary.LittleEndian.Uint32(b[i+4:]),
		})
	}
	if len(a) == 0 {
		return nil, errors.New("empty ACL xattr")
	}
	return a, nil
}

// String writes the ACL as getfacl does, with numeric ids:
// "user::rwx,group:5001:r-x,mask::rwx,other::---".
func (a acl) String() string {
	parts := make([]string, len(a))
	for i, e := range a {
		var tag, id string
		switch e.tag {
		case tagUserObj:
			tag = "user"
		case tagUser:
			tag, id = "user", fmt.Sprint(e.id)
		case tagGroupObj:
			tag = "group"
		case tagGroup:
			tag, id = "group", fmt.Sprint(e.id)
		case tagMask:
			tag = "mask"
		case tagOther:
			tag = "other"
		default:
			tag = fmt.Sprintf("tag%#x", e.tag)
		}
		parts[i] = tag + ":" + id + ":" + permString(e.perms)
	}
	return strings.Join(parts, ",")
}

func permString(p uint16) string {
	b := []byte("---")
	if p&4 != 0 {
		b[0] = 'r'
	}
	if p&2 != 0 {
		b[1] = 'w'
	}
	if p&1 != 0 {
		b[2] = 'x'
	}
	return string(b)
}
