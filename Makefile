# vserver: `make demo` and `make test` are the two commands a fresh Debian 12 machine needs (run as root).
SHELL := /bin/bash
.DEFAULT_GOAL := build
CONFIG ?= Release
BIN := $(CURDIR)/bin
DOTNET ?= dotnet
# Host packages: isolation tools, images, the comparison runtimes for bench/, QEMU for domains.
PACKAGES := gcc libc6-dev make busybox-static debootstrap e2fsprogs iproute2 nftables util-linux procps curl \
            crun runc lxc hyperfine qemu-system-x86 qemu-utils \
            kmod lz4 xz-utils zstd binutils cpio dnsmasq-base bzip2 umoci \
            clang zlib1g-dev
STAMP := .deps.stamp

.PHONY: deps build test unit integration demo bench clean

deps: $(STAMP)
$(STAMP): Makefile
	@command -v $(DOTNET) >/dev/null || { echo "make: the .NET 10 SDK is required (dotnet not found on PATH)" >&2; exit 1; }
	@$(DOTNET) --list-sdks | grep -q '^10\.' || { echo "make: the .NET 10 SDK is required; found: $$($(DOTNET) --list-sdks | tr '\n' ' ')" >&2; exit 1; }
	@missing=$$(for p in $(PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "make: installing $$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@touch $@

build: deps $(BIN)/vsinit
	$(DOTNET) build Vserver.sln -c $(CONFIG) -warnaserror -nologo -v q
	$(DOTNET) publish src/Vserver.Agent -c $(CONFIG) -o $(BIN) -nologo -v q --no-restore
	$(DOTNET) publish src/Vserver.Cli -c $(CONFIG) -o $(BIN) -nologo -v q --no-restore
	@rm -f $(BIN)/vsctl.dbg $(BIN)/vsctl.dll $(BIN)/vsctl.deps.json $(BIN)/vsctl.runtimeconfig.json $(BIN)/vsctl.pdb
	@echo "built $(BIN)/vsctl $(BIN)/vserverd $(BIN)/vsinit"

$(BIN)/vsinit: $(wildcard src/Vserver.Isolation/native/*.c src/Vserver.Isolation/native/*.h) | deps
	@mkdir -p $(BIN)
	gcc -O2 -Wall -Wextra -Werror -o $@ $(filter %.c,$^)

# Every test: unit tests of pure logic, then integration tests that run real vservers as root, then the escape and
# abuse attempts of tests/Security, made from inside real vservers, then tests/Faults: the agent killed at every step,
# a host restart, guests killed from outside, a full state disk, many clients at once.
test: build
	$(DOTNET) test tests/Vserver.Tests -c $(CONFIG) --no-build -nologo
	VSERVER_BIN=$(BIN) $(DOTNET) test tests/Vserver.IntegrationTests -c $(CONFIG) --no-build -nologo
	VSERVER_BIN=$(BIN) $(DOTNET) test tests/Security -c $(CONFIG) --no-build -nologo
	VSERVER_BIN=$(BIN) $(DOTNET) test tests/Faults -c $(CONFIG) --no-build -nologo

demo: build
	examples/tour.sh

bench: build
	bench/start-latency
	bench/domain-boot
	bench/density/run.sh
	bench/promotion/run.sh
	bench/provision/run.sh
	bench/load/run.sh
	bench/systemd-boot/run.sh
	bench/cli-latency/run.sh

clean:
	rm -rf $(BIN) $(STAMP) src/*/bin src/*/obj tests/*/bin tests/*/obj
