# cocoon: build, test and benchmark. Everything runs as root on Debian 12.
#   make run    build everything and boot a sandbox (prints the guest kernel and agent version)
#   make test   install dependencies, build, run unit and integration tests

GO        ?= go
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
PREFIX    ?= /usr/local
SHAREDIR  ?= /usr/share/cocoon
CONFDIR   ?= /etc/cocoon
BIN       := bin
OUT       := out
export COCOON_CACHE ?= /var/cache/cocoon

GOFLAGS_BUILD := -trimpath -ldflags '-s -w -X main.version=$(VERSION)'
# The shim library's -v (which CRI-O runs and logs) prints containerd's
# version variable: the shim's version there.
SHIM_GOFLAGS  := -trimpath -ldflags '-s -w -X main.version=$(VERSION) -X github.com/containerd/containerd/v2/version.Version=$(VERSION)'
# The agent is the guest's /init and its own "runc init": static, with cgo for
# libcontainer's nsenter and seccomp (Debian's libseccomp-dev ships libseccomp.a).
AGENT_TAGS    := seccomp osusergo netgo
AGENT_LDFLAGS := -s -w -extldflags -static -X github.com/cocoon-containers/cocoon/agent.Version=$(VERSION)
INTEGRATION_PKGS := ./integration/... ./hypervisor/... ./agent/...

.PHONY: all deps build kernel image crictl critest containerd2 crio kubernetes run test unit integration bench bench-density bench-kernels install uninstall register unregister docker-register docker-unregister clean proto

all: build

# Packages for building and testing: the same script that sets up a host
# (packaging/setup-host.sh), in its packages-only mode.
deps:
	@bash packaging/setup-host.sh --deps-only --test-deps

# The relay is static: it runs in the container's root file system (its
# root there), where it starts its OOM balloon (relay.MirrorOOM) from itself.
build:
	@mkdir -p $(BIN)
	$(GO) build $(GOFLAGS_BUILD) -o $(BIN)/cocoon-runtime ./cmd/runtime
	$(GO) build $(GOFLAGS_BUILD) -o $(BIN)/cocoon-proxy ./cmd/proxy
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $(BIN)/cocoon-relay ./cmd/relay
	$(GO) build $(SHIM_GOFLAGS) -o $(BIN)/containerd-shim-cocoon-v2 ./cmd/containerd-shim-cocoon-v2
	$(GO) build -o $(BIN)/mkinitrd ./packaging/cmd/mkinitrd
	$(GO) build -o $(BIN)/dockerconfig ./packaging/cmd/dockerconfig
	$(GO) build -o $(BIN)/containerdconfig ./packaging/cmd/containerdconfig
	CGO_ENABLED=1 $(GO) build -trimpath -tags '$(AGENT_TAGS)' -ldflags '$(AGENT_LDFLAGS)' -o $(BIN)/cocoon-agent ./cmd/agent

# crictl for the CRI tests (integration/cri), built once into the cache
# outside the clone (about 3 minutes cold); the tests find it there.
CRICTL_VERSION := v1.37.0
CRICTL := $(COCOON_CACHE)/bin/crictl-$(CRICTL_VERSION)
crictl: $(CRICTL)
$(CRICTL):
	@mkdir -p $(COCOON_CACHE)/bin
	cd / && GOBIN=$(COCOON_CACHE)/bin.tmp.$$$$ $(GO) install -ldflags '-X sigs.k8s.io/cri-tools/pkg/version.Version=$(CRICTL_VERSION)' \
	  sigs.k8s.io/cri-tools/cmd/crictl@$(CRICTL_VERSION) && mv $(COCOON_CACHE)/bin.tmp.$$$$/crictl $@ && rmdir $(COCOON_CACHE)/bin.tmp.$$$$

# critest, the CRI validation suite of cri-tools, for integration/critest:
# `go test -c ./cmd/critest` in a writable copy of the module (the module
# cache is read-only), built once into the cache outside the clone.
CRITEST_VERSION := v1.34.0
CRITEST := $(COCOON_CACHE)/bin/critest-$(CRITEST_VERSION)
critest: $(CRITEST)
$(CRITEST):
	@mkdir -p $(COCOON_CACHE)/bin $(COCOON_CACHE)/src
	cd / && tmp=$(COCOON_CACHE)/src/cri-tools.tmp.$$$$ && \
	  src=$$($(GO) mod download -json sigs.k8s.io/cri-tools@$(CRITEST_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p') && \
	  test -d "$$src" && rm -rf $$tmp && cp -r $$src $$tmp && chmod -R u+w $$tmp && \
	  (cd $$tmp && $(GO) test -c -ldflags '-X sigs.k8s.io/cri-tools/pkg/version.Version=$(CRITEST_VERSION)' -o $@.tmp ./cmd/critest); \
	  rc=$$?; rm -rf $$tmp; [ $$rc -eq 0 ] && mv $@.tmp $@

# containerd 2.x for the containerd and CRI suites' second run (integration/
# containerdtest finds it there): containerd, ctr and its runc shim, built
# once from github.com/containerd/containerd/v2 into the cache outside the
# clone (about 3.5 minutes cold on 2 cores). Debian's containerd 1.6 is the
# first run's; Debian's runc shim does not work with 2.x, hence its own.
CONTAINERD2_VERSION := v2.4.2
CONTAINERD2_DIR := $(COCOON_CACHE)/containerd-$(CONTAINERD2_VERSION:v%=%)
CONTAINERD2 := $(CONTAINERD2_DIR)/bin/containerd
CONTAINERD2_LDFLAGS := -s -w -X github.com/containerd/containerd/v2/version.Version=$(CONTAINERD2_VERSION)
containerd2: $(CONTAINERD2)
$(CONTAINERD2):
	@mkdir -p $(COCOON_CACHE)
	cd / && tmp=$(CONTAINERD2_DIR).tmp.$$$$ && rm -rf $$tmp && \
	  GOBIN=$$tmp/bin $(GO) install -tags 'no_btrfs no_devmapper urfave_cli_no_docs' -ldflags '$(CONTAINERD2_LDFLAGS)' \
	    github.com/containerd/containerd/v2/cmd/containerd@$(CONTAINERD2_VERSION) \
	    github.com/containerd/containerd/v2/cmd/ctr@$(CONTAINERD2_VERSION) && \
	  CGO_ENABLED=0 GOBIN=$$tmp/bin $(GO) install -tags 'no_btrfs no_devmapper urfave_cli_no_docs no_grpc' -ldflags '$(CONTAINERD2_LDFLAGS)' \
	    github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$(CONTAINERD2_VERSION) && \
	  rm -rf $(CONTAINERD2_DIR) && mv $$tmp $(CONTAINERD2_DIR)

# CRI-O for the CRI-O suite (integration/crio finds it there): crio and its
# pinns, built once into the cache outside the clone. The Go module proxy
# serves exact versions only (it lists none, so `go install crio@version`
# fails): the module is built in a copy of its own. Build tags that need no C
# library beyond libseccomp (Debian's libseccomp-dev, which the agent needs
# too): OpenPGP in Go instead of gpgme, no ostree, no btrfs driver; pinns is
# C (static, as CRI-O's Makefile builds it).
CRIO_VERSION := v1.36.3
CRIO_DIR := $(COCOON_CACHE)/crio-$(CRIO_VERSION:v%=%)
CRIO := $(CRIO_DIR)/bin/crio
CRIO_TAGS := containers_image_openpgp containers_image_ostree_stub exclude_graphdriver_btrfs btrfs_noversion seccomp
crio: $(CRIO)
$(CRIO):
	@mkdir -p $(COCOON_CACHE)
	cd / && tmp=$(CRIO_DIR).tmp.$$$$ && rm -rf $$tmp && mkdir -p $$tmp/bin && \
	  $(GO) mod download github.com/cri-o/cri-o@$(CRIO_VERSION) && \
	  cp -r $$($(GO) env GOMODCACHE)/github.com/cri-o/cri-o@$(CRIO_VERSION) $$tmp/src && chmod -R u+w $$tmp/src && \
	  cd $$tmp/src && CGO_ENABLED=1 $(GO) build -trimpath -tags '$(CRIO_TAGS)' -ldflags '-s -w' -o $$tmp/bin/crio ./cmd/crio && \
	  $(MAKE) -C pinns && mv bin/pinns $$tmp/bin/ && cd / && rm -rf $$tmp/src && \
	  rm -rf $(CRIO_DIR) && mv $$tmp $(CRIO_DIR)

# Kubernetes for the kubelet suite (integration/kubelet finds it there):
# kube-apiserver, kubelet, kubectl and an etcd, built once into the cache
# outside the clone. k8s.io/kubernetes replaces its staging modules with
# ./staging, so it builds from a wrapper module (packaging/kubernetes/build:
# go.mod pins each staging module to the release's v0.x.y). The
# version variables are the ones hack/lib/version.sh sets, so that
# `kubectl version` and the kubelet report the release; no VCS stamp (the
# wrapper sits in this clone). About 6.5 minutes cold on 2 cores.
KUBERNETES_VERSION := v1.34.2
KUBERNETES_DIR := $(COCOON_CACHE)/kubernetes-$(KUBERNETES_VERSION:v%=%)
KUBERNETES := $(KUBERNETES_DIR)/bin/kubelet
KUBERNETES_VERSION_PKGS := k8s.io/client-go/pkg/version k8s.io/component-base/version
KUBERNETES_LDFLAGS := -s -w $(foreach p,$(KUBERNETES_VERSION_PKGS),-X $(p).gitVersion=$(KUBERNETES_VERSION) \
  -X $(p).gitMajor=$(word 1,$(subst ., ,$(KUBERNETES_VERSION:v%=%))) -X $(p).gitMinor=$(word 2,$(subst ., ,$(KUBERNETES_VERSION))) \
  -X $(p).gitTreeState=clean -X $(p).buildDate=1970-01-01T00:00:00Z)
kubernetes: $(KUBERNETES)
$(KUBERNETES):
	@mkdir -p $(COCOON_CACHE)
	tmp=$(KUBERNETES_DIR).tmp.$$$$ && rm -rf $$tmp && mkdir -p $$tmp/bin && \
	  (cd packaging/kubernetes/build && CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags '$(KUBERNETES_LDFLAGS)' -o $$tmp/bin/ \
	    ./etcd k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/cmd/kubelet) && \
	  rm -rf $(KUBERNETES_DIR) && mv $$tmp $(KUBERNETES_DIR) || { rm -rf $$tmp; exit 1; }

# The guest kernel is cached under $(COCOON_CACHE), keyed by its fragments:
# the first build takes about 15 minutes on 2 cores, later ones are instant.
kernel:
	@mkdir -p $(OUT)
	@dir=$$(bash kernel/build.sh) && \
	  cp -f $$dir/vmlinux $$dir/bzImage $(OUT)/ && cp -f $$dir/release $(OUT)/kernel.release && \
	  echo "kernel: $$(cat $(OUT)/kernel.release) ($$dir)"

image: build
	@mkdir -p $(OUT)
	$(BIN)/mkinitrd -agent $(BIN)/cocoon-agent -version $(VERSION) -o $(OUT)/initrd.img
	@printf '%s\n' '# Development configuration: the assets built in this tree. VM templates' \
	  '# are off: the suites that test them turn them on, with their own directory.' \
	  '[hypervisor]' 'kernel = "vmlinux"' 'initrd = "initrd.img"' 'templates = false' \
	  '[runtime]' 'proxy_path = "../$(BIN)/cocoon-proxy"' > $(OUT)/configuration.toml

# Boots a sandbox (probe: guest kernel and agent version), then runs
# `uname -a` in a busybox container in its own VM, beside the host's.
run: deps kernel image
	$(BIN)/cocoon-runtime --config $(OUT)/configuration.toml probe
	@rm -rf $(OUT)/busybox && $(GO) run ./packaging/cmd/mkbundle -runtime $(BIN)/cocoon-runtime -o $(OUT)/busybox -- uname -a
	@echo "host:      $$(uname -a)"
	@printf 'container: '; $(BIN)/cocoon-runtime --config $(OUT)/configuration.toml run --bundle $(OUT)/busybox cocoon-run-$$$$

test: deps kernel image crictl critest containerd2 crio kubernetes unit integration

unit:
	$(GO) vet ./...
	$(GO) vet -tags integration ./...
	$(GO) test -race -count=1 ./...

# -v so that measurements the tests log (stdout throughput) reach the log;
# the full output is kept in $(OUT)/integration.log, the summary is printed,
# and a failure prints the log's tail.
# The runtime suite runs a second time with QEMU 7.2 (Debian 12's, which
# make deps unpacks beside the system's 10): cold boots, as with templates
# "auto" there. The containerd and CRI suites and the CRI validation suite
# (critest: its tallies and the exceptions are printed) and the kubelet
# suite (a kubelet of make kubernetes on that containerd) run first against
# Debian's containerd 1.6 (on PATH), then against containerd 2.x (make
# containerd2); the kubelet suite runs a third time on CRI-O (make crio).
CONTAINERD_PKGS := ./integration/containerd/ ./integration/cri/ ./integration/critest/ ./integration/kubelet/
QEMU_72 := $(COCOON_CACHE)/qemu-7.2/usr/bin/qemu-system-x86_64
integration:
	@mkdir -p $(OUT)
	@export COCOON_TEST_OUT=$(CURDIR)/$(OUT) COCOON_TEST_BIN=$(CURDIR)/$(BIN) COCOON_TEST_KERNEL=$(CURDIR)/$(OUT)/vmlinux; \
	  { $(GO) test -tags integration -count=1 -p 1 -timeout 25m -v $(INTEGRATION_PKGS) && \
	    COCOON_TEST_QEMU=$(QEMU_72) $(GO) test -tags integration -count=1 -p 1 -timeout 15m -v ./integration/runtime/ && \
	    echo "--- containerd $(CONTAINERD2_VERSION) ($(CONTAINERD2)): the containerd, CRI, CRI validation and kubelet suites again" && \
	    COCOON_TEST_CONTAINERD=$(CONTAINERD2) $(GO) test -tags integration -count=1 -p 1 -timeout 15m -v $(CONTAINERD_PKGS) && \
	    echo "--- CRI-O $(CRIO_VERSION): the kubelet suite on CRI-O" && \
	    COCOON_TEST_KUBELET_CRI=crio $(GO) test -tags integration -count=1 -p 1 -timeout 15m -v ./integration/kubelet/; } > $(OUT)/integration.log 2>&1; rc=$$?; \
	  grep -E '^(--- |ok |FAIL)|^[a-z ]*throughput|left behind|^critest: (containerd|exception|passes)' $(OUT)/integration.log; \
	  if [ $$rc -ne 0 ]; then echo "--- integration log tail ($(OUT)/integration.log):"; tail -n 150 $(OUT)/integration.log; fi; \
	  exit $$rc

bench: deps kernel image crictl kubernetes crio
	$(GO) run ./bench -out $(CURDIR)/$(OUT) -bin $(CURDIR)/$(BIN)

# The density section alone (it is also the last section of bench): up to
# DENSITY_MAX idle containers from VM templates; the chart goes to
# $(OUT)/bench/density.png.
DENSITY_MAX ?= 100
bench-density: deps kernel image
	$(GO) run ./bench -out $(CURDIR)/$(OUT) -bin $(CURDIR)/$(BIN) -density -density-max $(DENSITY_MAX)

# The guest kernel section alone (it is also part of bench): out/vmlinux
# beside the kernel that kernel/fragments built before their last change
# (built into $(COCOON_CACHE) by kernel/build.sh; KERNEL_BASE=<git rev>
# picks another): boot, restore from a template, idle PSS.
KERNEL_BASE ?=
bench-kernels: deps kernel image
	$(GO) run ./bench -out $(CURDIR)/$(OUT) -bin $(CURDIR)/$(BIN) -kernels -kernel-base '$(KERNEL_BASE)'

# Binaries to $(PREFIX)/bin (containerd-shim-cocoon-v2 too when it is
# built), the guest kernel and initrd to $(SHAREDIR), the configuration to
# $(CONFDIR) unless one is there already (it is the user's); DESTDIR is
# prepended to all of them, as packagers expect.
INSTALL_BINS := cocoon-runtime cocoon-proxy cocoon-relay containerd-shim-cocoon-v2
install: build kernel image
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(SHAREDIR) $(DESTDIR)$(CONFDIR)
	for b in $(INSTALL_BINS); do if [ -e $(BIN)/$$b ]; then install -m 0755 $(BIN)/$$b $(DESTDIR)$(PREFIX)/bin/; fi; done
	install -m 0644 $(OUT)/vmlinux $(OUT)/bzImage $(OUT)/initrd.img $(OUT)/kernel.release $(DESTDIR)$(SHAREDIR)/
	test -e $(DESTDIR)$(CONFDIR)/configuration.toml || \
	  sed 's|/usr/share/cocoon/|$(SHAREDIR)/|' config/configuration.toml > $(DESTDIR)$(CONFDIR)/configuration.toml

# Removes what install installed; the configuration only when it is still
# the one install wrote (an edited one is the user's and stays).
# cocoon-shim is the relay's earlier name (now cocoon-relay): an older install's goes too.
uninstall:
	for b in $(INSTALL_BINS) cocoon-shim; do rm -f $(DESTDIR)$(PREFIX)/bin/$$b; done
	rm -rf $(DESTDIR)$(SHAREDIR)
	@f=$(DESTDIR)$(CONFDIR)/configuration.toml; \
	if [ -e $$f ]; then \
	  if sed 's|/usr/share/cocoon/|$(SHAREDIR)/|' config/configuration.toml | cmp -s - $$f; then \
	    rm -f $$f; rmdir $(DESTDIR)$(CONFDIR) 2>/dev/null || true; \
	  else echo "uninstall: keeping $$f (edited)"; fi; \
	fi

# Registers the installed runtime with every container engine installed
# here (Docker, containerd, CRI-O; see packaging/register.sh), or removes it.
register: build
	bash packaging/register.sh register

unregister: build
	bash packaging/register.sh unregister

# Registers the installed runtime with Docker as "cocoon" (merges it into
# /etc/docker/daemon.json, keeping the rest, and reloads a running dockerd);
# see packaging/docker/register.sh for the variables that change the paths.
docker-register: build
	DOCKERCONFIG=$(CURDIR)/$(BIN)/dockerconfig bash packaging/docker/register.sh register

docker-unregister: build
	DOCKERCONFIG=$(CURDIR)/$(BIN)/dockerconfig bash packaging/docker/register.sh unregister

clean:
	rm -rf $(BIN) $(OUT)

proto:
	GOBIN=$(CURDIR)/$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	GOBIN=$(CURDIR)/$(BIN) $(GO) install github.com/containerd/ttrpc/cmd/protoc-gen-go-ttrpc@v1.2.10
	PATH=$(CURDIR)/$(BIN):$$PATH protoc -I api --go_out=api --go_opt=paths=source_relative \
	  --go-ttrpc_out=api --go-ttrpc_opt=paths=source_relative api/agent.proto
