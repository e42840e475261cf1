# Debian packages: `make deb` builds alize and alize-controller into
# $(DEB_OUT) (bin/deb), `make deb-lint` runs lintian on them.
# Included by the top-level Makefile; also runs alone:
#   make -f packaging/deb.mk deb DEB_OUT=/tmp/debs
# See docs/packaging.md.

DEB_OUT     ?= bin/deb
DEB_VERSION  = $(shell dpkg-parsechangelog -l debian/changelog -S Version)
DEB_SRC      = $(DEB_OUT)/alize-$(DEB_VERSION)

.PHONY: deb deb-lint deb-clean

## deb: build the alize and alize-controller .deb packages into bin/deb (offline: Go module cache)
# dpkg-buildpackage writes next to the tree it builds: build a copy of the
# working tree (tracked and new files, not ignored ones) under $(DEB_OUT),
# so that the packages land there and the working tree stays clean.
deb:
	rm -rf $(DEB_SRC)
	mkdir -p $(DEB_SRC)
	git ls-files -z --cached --others --exclude-standard | \
		xargs -0 sh -c 'for f; do [ -e "$$f" ] || [ -L "$$f" ] && printf "%s\0" "$$f"; done' sh | \
		tar --null -T - -cf - | tar -xf - -C $(DEB_SRC)
	cd $(DEB_SRC) && dpkg-buildpackage -b -us -uc
	rm -rf $(DEB_SRC)
	@ls -1 $(DEB_OUT)/*_$(DEB_VERSION)_*.deb

## deb-lint: lintian on the packages (no error, no warning)
deb-lint:
	lintian --fail-on error,warning $(DEB_OUT)/alize_$(DEB_VERSION)_*.changes

deb-clean:
	rm -rf $(DEB_OUT)
