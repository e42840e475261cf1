#!/bin/sh
# Installs the Debian packages Alizé's tests and demo run for real:
# nftables, iproute2, slapd, ldap-utils, samba, samba-vfs-modules, smbclient,
# libnss-wrapper, acl, dbus, systemd, postgresql; debhelper and lintian (the
# Debian packages' test). Idempotent and quiet when everything is there.
set -eu

PKGS="nftables iproute2 slapd ldap-utils samba samba-vfs-modules smbclient libnss-wrapper acl dbus systemd postgresql debhelper lintian"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "testenv: missing Debian packages:$missing" >&2
	echo "testenv: run as root (or: sudo $0) to install them" >&2
	exit 1
fi

echo "testenv: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# Keep the packaged daemons from starting: tests run their own on loopback.
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
	chmod 0755 /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends $missing >/dev/null
