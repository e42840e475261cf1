// Package packaging holds the Debian packaging's test: it builds the alize
// and alize-controller packages from debian/ (make -f packaging/deb.mk deb),
// runs lintian, installs them on this machine, checks the commands, the
// units and the conffiles, upgrades, removes and purges them. The units,
// default configurations, tmpfiles.d and sysusers.d files it ships are
// in this directory; gendoc makes the man pages and completions.
//
// Nothing imports it.
package packaging
