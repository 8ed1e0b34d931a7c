# Convoy's build. `make` builds the pinned upstream tools and convoy into bin/;
# `make up` runs the hub; `make test` runs every test against real binaries.
SHELL := /usr/bin/env bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/convoy-dev/convoy/internal/version.Convoy=$(VERSION)
# The catalog packages make up pushes (make catalog pushes them all).
CATALOG_UP := catalog/redis catalog/postgres catalog/nats catalog/rabbitmq

.PHONY: all deps tools build generate verify-generated up catalog down test test-short test-chaos bench bench-scale clean

all: tools build

## deps: install the Debian packages that real nodes need (containerd, runc, CNI plugins,
## iptables, conntrack), when they are missing; without root it names them and fails
deps:
	@hack/deps.sh

## tools: build the pinned kube-apiserver, kube-controller-manager, kube-scheduler, kubectl,
## kine, kwok and controller-gen into bin/ (skipped when bin/ has them at the pinned version)
tools:
	@hack/tools.sh

## build: build bin/convoy (static: the hub also packs it into the agent's image), and the
## programs of real nodes' pods: bin/convoy-pause (the sandbox of every pod) and bin/convoy-volume
## (the default StorageClass's volume helper), in one invocation
build:
	@echo "==> building bin/convoy $(VERSION)"
	@CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o bin/ ./cmd/convoy ./cmd/convoy-pause ./cmd/convoy-volume

## generate: regenerate deepcopy code and CRDs from api/
generate: tools
	bin/controller-gen object paths=./api/...
	bin/controller-gen crd paths=./api/... output:crd:dir=config/crd

## verify-generated: fail when api/ and config/crd/ are out of step
verify-generated: generate
	@git diff --exit-code -- api config >/dev/null || { git diff --stat -- api config; echo "generated files are stale: run 'make generate' and commit the result"; exit 1; }

## up: build everything, then start a hub and three local clusters of two real nodes each (convoy
## up), and put the demo app's image (examples/web) and the light catalog packages in the fleet
## registry; `bin/convoy down` stops them
up: deps all
	bin/convoy up
	bin/convoy image build ./examples/web --name registry.convoy.local/examples/web:1
	bin/convoy package push $(CATALOG_UP)

## catalog: push every package of catalog/ to the running fleet's registry, the heavy ones too:
## ferretdb compiles FerretDB from its Go module (about 5 minutes cold, 1 warm) and pytorch is a
## 260 MiB image (about a minute); make up leaves them out to keep a cold start short
catalog: build
	bin/convoy package push $(wildcard catalog/*)

## down: stop the hub and every local cluster (data kept; bin/convoy down --purge removes it)
down:
	bin/convoy down

## test: vet and run every test (real kube-apiserver and kine from bin/), then the fault tests
test: deps all verify-generated
	$(GO) vet ./...
	$(GO) vet -tags chaos ./test/chaos/
	$(GO) test -count=1 -timeout 50m ./...
	@$(MAKE) --no-print-directory test-chaos

## test-chaos: the fault tests (the hub killed in rollouts, down for a minute under 100
## clusters, restarted under 1,000 reconnecting at once, a partitioned agent, invalid input in
## bulk, agent isolation) and fuzzing of the
## scheduler and of manifest decoding from their committed seed corpora, half a million inputs
## each (about 30 s here). A count, not a duration: with -fuzztime 30s, go1.26's fuzzing
## coordinator sometimes fails the run with "context deadline exceeded" and no crasher when
## the time runs out (golang/go#75804, fixed in go1.27)
test-chaos: all
	$(GO) test -tags chaos -count=1 -v -timeout 30m ./test/chaos/
	$(GO) test -run '^$$' -fuzz '^FuzzSchedule$$' -fuzztime 500000x ./internal/scheduler/
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime 500000x ./internal/manifest/

## test-short: the quick tests only
test-short: all
	$(GO) test -count=1 -short ./...

## bench: measure start-up time and memory; prints the figures and the machine
bench: all
	$(GO) test -count=1 -run '^$$' -bench . -skip Scale -benchtime 1x -timeout 60m ./test/bench/

## bench-scale: simulated fleets of 10, 100 and 1,000 clusters against one hub; writes
## docs/scale.json and docs/SCALE.md (CONVOY_SCALE_N=10,100 picks other sizes)
bench-scale: all
	CONVOY_SCALE_REPORT=$(CURDIR)/docs $(GO) test -count=1 -run '^$$' -bench Scale -benchtime 1x -timeout 90m ./test/bench/

## clean: remove bin/convoy (the upstream tools stay: they take minutes to build)
clean:
	rm -f bin/convoy
