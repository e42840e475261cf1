# Alizé — build, test, benchmark, lint.
# `make test` is what CI runs (.ci/run): run it as root on Debian 12; it
# installs the Debian packages the tests need when they are missing.

GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
TESTFLAGS   ?=
BENCHFLAGS  ?= -benchtime=1x -count=1
CMDS        := $(wildcard agent/cmd/* controller/cmd/*)

.PHONY: all build test deps bench lint fmt clean

all: build

## build: compile every package; the commands (agent/cmd/…, controller/cmd/…) into ./bin
build:
	$(GO) build ./...
ifneq ($(CMDS),)
	mkdir -p bin
	$(GO) build -trimpath -o bin/ $(addprefix ./,$(CMDS))
endif

## demo: a simulated school on this machine (root): the academy's controller, a school
## server (firewall, OpenLDAP, Samba, the alize agent), a pupil's PC; the story told step
## by step; everything removed at the end. KEEP=1 leaves it running (it says how to stop it).
.PHONY: demo
demo: deps
	mkdir -p bin
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/ ./agent/cmd/alize ./controller/cmd/alize-controller
	$(GO) build -o bin/alize-demo ./testenv/school/cmd/demo
	KEEP=$(KEEP) bin/alize-demo --bin bin

## deps: install the Debian packages the tests run for real (idempotent)
deps:
	@testenv/install-deps.sh

## test: vet, then every test with the race detector and real services
test: deps
	$(GO) vet ./...
	ALIZE_SYSTEST=1 $(GO) test -race -timeout 20m $(TESTFLAGS) ./...

## bench: run the benchmarks and print their figures (see docs/benchmarks.md);
## testenv/fleetsim's 17,000 agents take ~8 minutes per store
bench: deps
	ALIZE_SYSTEST=1 $(GO) test -run '^$$' -bench . -benchmem -timeout 120m $(BENCHFLAGS) ./... | grep -E '^(Benchmark|ok|FAIL|---|goos|goarch|cpu|pkg)'

## lint: go vet and staticcheck (pinned)
lint:
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

## fmt: format the Go code
fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin

# Debian packages: make deb, deb-lint, deb-clean (see docs/packaging.md).
include packaging/deb.mk
