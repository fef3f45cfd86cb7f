# The Finance Service. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Every module of the workspace (go.work), by directory and by import path.
MODULE_DIRS  := $(shell go list -m -f '{{.Dir}}')
MODULE_PKGS  := $(shell go list -m -f '{{.Path}}/...')
SERVICES     := devkafka devstack dispatcher financectl gateway legacy outbox-relay processor-sim status-consumer webhook-delivery
BIN          := $(CURDIR)/bin
TOOLS        := $(CURDIR)/.run/tools
PROTOC_GEN_GO_VERSION := v1.36.12
PROTO_FILES  := $(shell find proto -name '*.proto')
GO_TEST_FLAGS ?= -timeout 15m
# Helm, built from the Go module proxy into $(TOOLS) by `make helm`.
HELM_VERSION := v3.21.4
# govulncheck, built from the Go module proxy into $(TOOLS) by `make vulncheck`.
GOVULNCHECK_VERSION := v1.10.0
HELM         := $(TOOLS)/helm
# Mermaid's parser for make docs-check, installed from the npm registry by
# `make mermaidcheck` (tools/mermaidcheck's package-lock.json).
MERMAIDCHECK := $(TOOLS)/mermaidcheck
CHART        := deploy/helm/finance
# The cluster version the chart is rendered for: that of the schemas vendored
# in deploy/test/k8sschema.
KUBE_VERSION := 1.36.3
# Images: one per service, from deploy/docker/Dockerfile.
IMAGE_SERVICES := gateway outbox-relay dispatcher status-consumer financectl processor-sim
# Issue 15's delivery service, once its folder exists.
IMAGE_SERVICES += $(notdir $(wildcard services/webhook-delivery))
IMAGE_REPO   ?= finance
IMAGE_TAG    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo dev)

.PHONY: help
help: ## List the targets.
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-16s %s\n", $$1, $$2}'

.PHONY: build
build: ## Build every service into bin/.
	@mkdir -p $(BIN)
	@for s in $(SERVICES); do echo "go build bin/$$s"; go build -o $(BIN)/$$s ./services/$$s || exit 1; done

.PHONY: run
run: build ## Run the whole pipeline on this machine (PostgreSQL, Kafka broker, simulator, services). Ctrl-C stops it.
	@$(BIN)/devstack run

.PHONY: test
test: generate-check lint tidy-check build chart-check docs-check fuzz-short ## Vet, lint, check generated code and go.mod, the Helm chart, the docs, each fuzz target for 3 s, then every test (unit, integration, end-to-end).
	@set -e; \
	url=$$($(BIN)/devstack ensure-postgres); \
	trap '$(BIN)/devstack stop-postgres >/dev/null 2>&1 || true' EXIT; \
	echo "PostgreSQL for tests: $$url"; \
	PGTEST_URL="$$url" FINANCE_BIN_DIR=$(BIN) go test $(GO_TEST_FLAGS) $(MODULE_PKGS); \
	$(MAKE) --no-print-directory test-browser PGTEST_URL="$$url"

# The operator console in headless Chromium (Debian's chromium, driven by
# chromedp; the gateway's tests under the build tag browser). Installs
# chromium with apt-get when root and it is missing; without it and not
# root, says so and skips. Screenshots go to BROWSER_OUT.
BROWSER_OUT ?= $(CURDIR)/.run/browser-test
.PHONY: test-browser
test-browser: build ## The operator console's test in headless Chromium (installs chromium with apt-get when root); screenshots in .run/browser-test
	@set -e; \
	if ! command -v chromium >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "test-browser: installing chromium (apt-get, once)"; \
			apt-get install -y chromium >/dev/null || { apt-get update >/dev/null && apt-get install -y chromium >/dev/null; }; \
		else \
			echo "test-browser: skipped: no chromium, and not root to install it (apt-get install chromium)"; exit 0; \
		fi; \
	fi; \
	url="$(PGTEST_URL)"; \
	if [ -z "$$url" ]; then \
		url=$$($(BIN)/devstack ensure-postgres); \
		trap '$(BIN)/devstack stop-postgres >/dev/null 2>&1 || true' EXIT; \
	fi; \
	mkdir -p $(BROWSER_OUT); \
	cd services/gateway && PGTEST_URL="$$url" go test -count=1 -tags browser -run 'InBrowser' -artifacts -outputdir $(BROWSER_OUT) ./internal/httpapi/; \
	echo "test-browser: screenshots in $(BROWSER_OUT)/_artifacts"

# The fuzz targets of every decoder of outside input (docs/security.md),
# as package:target: tokens; Kafka record values and dead letters' headers;
# the gateway's request bodies, cursors, keys, path and query parameters
# (payments, webhook endpoints, the admin dead-letter routes); the
# processor's answers (the dispatcher's calls and lookups, the reconciler's
# lookup, the statement whole and from after_seq on).
FUZZ_TARGETS := \
	./pkg/auth:FuzzVerify \
	./pkg/wire:FuzzDecodeRequested ./pkg/wire:FuzzDecodeOutcome ./pkg/wire:FuzzDecodeEvent \
	./pkg/dlq:FuzzEntryOf \
	./pkg/reconcile:FuzzHTTPLookup \
	./pkg/verify:FuzzStatement \
	./services/gateway/internal/httpapi:FuzzPaymentRequest \
	./services/gateway/internal/httpapi:FuzzQueryParams \
	./services/gateway/internal/httpapi:FuzzCursor \
	./services/gateway/internal/httpapi:FuzzDuplicateKey \
	./services/gateway/internal/httpapi:FuzzWebhookEndpoint \
	./services/gateway/internal/httpapi:FuzzWebhookQuery \
	./services/gateway/internal/httpapi:FuzzAdminDLQ \
	./services/dispatcher/internal/processor:FuzzReplyProposed \
	./services/dispatcher/internal/processor:FuzzReplyAsIs \
	./services/dispatcher/internal/processor:FuzzBatchReply \
	./services/dispatcher/internal/processor:FuzzLookup \
	./services/dispatcher/internal/processor:FuzzParseRetryAfter
FUZZTIME ?= 10m
# make test's short run is a count, not a duration: go1.26's fuzz
# coordinator can fail a duration run at its end with a bare "context
# deadline exceeded" and no input (golang/go#75804, fixed in go1.27), which
# a loaded machine makes likely. 1000 runs take a few seconds per target.
FUZZ_SHORT ?= 1000x

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (default 10m); a failing input is written to the package's testdata/fuzz/<target>/. A bare "context deadline exceeded" at the end, with no input written, is golang/go#75804, not a finding.
	@for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$name ($$pkg) for $(FUZZTIME)"; \
		go test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	done

.PHONY: fuzz-short
fuzz-short: ## Each fuzz target for a few seconds (FUZZ_SHORT runs; part of make test).
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZ_SHORT)

.PHONY: lint
lint: ## go vet and gofmt over every module.
	go vet $(MODULE_PKGS)
	@out=$$(gofmt -l $(MODULE_DIRS)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

.PHONY: tidy
tidy: ## go mod tidy in every module.
	@for d in $(MODULE_DIRS); do (cd $$d && GOWORK=off GOFLAGS=-mod=mod go mod tidy) || exit 1; done

.PHONY: tidy-check
tidy-check: ## Fail when go mod tidy would change a go.mod or go.sum.
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	for d in $(MODULE_DIRS); do \
		cp $$d/go.mod $$tmp/go.mod; touch $$d/go.sum; cp $$d/go.sum $$tmp/go.sum; \
		if ! (cd $$d && GOWORK=off GOFLAGS=-mod=mod go mod tidy); then \
			cp $$tmp/go.mod $$d/go.mod; cp $$tmp/go.sum $$d/go.sum; exit 1; fi; \
		if ! cmp -s $$d/go.mod $$tmp/go.mod || ! cmp -s $$d/go.sum $$tmp/go.sum; then \
			echo "go mod tidy changes $$d: run make tidy and commit"; \
			cp $$tmp/go.mod $$d/go.mod; cp $$tmp/go.sum $$d/go.sum; exit 1; fi; \
		[ -s $$d/go.sum ] || rm -f $$d/go.sum; \
	done; echo "go.mod files are tidy"

.PHONY: tools
tools: ## Install protoc (Debian package) and protoc-gen-go (pinned) when missing.
	@command -v protoc >/dev/null || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing protobuf-compiler with apt-get"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >/dev/null; \
		else echo "protoc is missing: install the protobuf-compiler package"; exit 1; fi; }
	@test -x $(TOOLS)/protoc-gen-go || GOBIN=$(TOOLS) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

.PHONY: proto
proto: tools ## Regenerate the Go code of proto/.
	cd proto && PATH=$(TOOLS):$$PATH protoc -I . --go_out=. --go_opt=paths=source_relative $(PROTO_FILES:proto/%=%)

.PHONY: generate-check
generate-check: tools ## Fail when the committed generated code differs from what `make proto` makes.
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	cd proto && PATH=$(TOOLS):$$PATH protoc -I . --go_out=$$tmp --go_opt=paths=source_relative $(PROTO_FILES:proto/%=%) && \
	for f in $$(cd $$tmp && find . -name '*.pb.go'); do \
		if ! cmp -s $$tmp/$$f $$f; then echo "generated code is stale: proto/$${f#./} (run make proto)"; exit 1; fi; \
	done; echo "generated code is up to date"

.PHONY: migrate
migrate: build ## Apply the database migrations to DATABASE_URL.
	$(BIN)/financectl migrate up

.PHONY: bench
bench: ## Run the Go benchmarks of every module.
	go test -run '^$$' -bench . -benchmem $(MODULE_PKGS)

.PHONY: clean
clean: ## Remove built binaries (keeps .run/ state: broker data, private PostgreSQL, the simulator's record).
	rm -rf $(BIN)

.PHONY: bench-dispatcher
bench-dispatcher: ## Dispatcher drain benchmark: 50,000 payments against processor-sim (L=300/s) with 1 and 2 replicas, L unknown, idle delay (~10 min); needs PostgreSQL on 127.0.0.1:5432 (BENCH_FLAGS=-postgres URL), where it creates and drops a database of its own.
	@mkdir -p $(BIN)
	go build -o $(BIN)/dispatcher ./services/dispatcher
	go build -o $(BIN)/processor-sim ./services/processor-sim
	go run ./services/dispatcher/cmd/benchdispatch -dispatcher $(BIN)/dispatcher -sim $(BIN)/processor-sim $(BENCH_FLAGS)

.PHONY: chaos
chaos: build ## Crash run: 5,000 payments over 1,000 users while every service is SIGKILLed 10+ times (consumers also inside their rebalances), broker faults, processor 5xx/lost replies and a 20 s outage; exit 1 unless 0 lost, 0 paid twice, 0 balance mismatches, 0 overdrafts and every payment final 2 min after the last kill. CHAOS_SCENARIO=rebalance-kills runs issue 10's kills instead; CHAOS_FLAGS passes flags.
	$(BIN)/devstack chaos --json .run/chaos-report.json --scenario $(or $(CHAOS_SCENARIO),default) $(CHAOS_FLAGS)

.PHONY: loadtest
loadtest: build ## One load-test scenario against a running target: SCENARIO=burst|burst-poll|mixed|outage|read-heavy|soak|read-users|read-max|sse-latency|hostile (`go run ./loadtest scenarios` describes each) TARGET=pipeline|legacy (see docs/loadtest.md). LOADTEST_FLAGS passes flags.
	go run ./loadtest run --scenario $(or $(SCENARIO),burst) --target $(or $(TARGET),pipeline) $(LOADTEST_FLAGS)

.PHONY: loadtest-smoke
loadtest-smoke: build ## The CI smoke run: small burst and read-heavy against the all-in-one stack and the as-is service; asserts the checker's counts.
	FINANCE_BIN_DIR=$(BIN) go test ./loadtest -run TestSmoke -count=1 -v

.PHONY: helm
helm: ## Build the pinned helm (HELM_VERSION, helm.sh/helm/v3) from the Go module proxy into .run/tools, unless it is there.
	@if [ "$$($(HELM) version --template '{{.Version}}' 2>/dev/null)" != "$(HELM_VERSION)" ]; then \
		echo "building helm $(HELM_VERSION) into $(TOOLS) (the first time takes a few minutes)"; \
		GOBIN=$(TOOLS) GOWORK=off GOFLAGS=-buildvcs=false go install \
			-ldflags "-X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION)" \
			helm.sh/helm/v3/cmd/helm@$(HELM_VERSION); fi

.PHONY: chart-check
chart-check: helm ## helm lint and helm template of deploy/helm/finance with each values file of its ci/ folder (deploy/test's Go test checks the rendered manifests).
	@set -e; for f in $(CHART)/ci/*-values.yaml; do \
		$(HELM) lint --strict --quiet $(CHART) -f $$f >/dev/null || { $(HELM) lint --strict $(CHART) -f $$f; exit 1; }; \
		$(HELM) template finance $(CHART) -n finance --kube-version $(KUBE_VERSION) -f $$f >/dev/null; \
		echo "helm lint and template: $$f"; done

.PHONY: vulncheck
vulncheck: ## govulncheck (GOVULNCHECK_VERSION, built from the Go module proxy) over every module, against vuln.go.dev (GOVULNDB); needs the network beyond the module proxy, so it is not part of make test (docs/security.md).
	@if [ "$$($(TOOLS)/govulncheck -version 2>/dev/null | sed -n 's/^Scanner: govulncheck@//p')" != "$(GOVULNCHECK_VERSION)" ]; then \
		GOBIN=$(TOOLS) GOWORK=off go install golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION); fi
	@set -e; for d in $(MODULE_DIRS); do echo "govulncheck: $$d"; (cd $$d && $(TOOLS)/govulncheck $(if $(GOVULNDB),-db $(GOVULNDB)) ./...); done

.PHONY: images
images: ## Build one container image per service (deploy/docker/Dockerfile) as IMAGE_REPO/<service>:IMAGE_TAG; needs a Docker engine.
	@if ! docker info >/dev/null 2>&1; then \
		echo "make images: no Docker engine answers here (docker info failed), so no image was built."; \
		echo "Run it on a machine with Docker (BuildKit); see deploy/docker/README.md."; exit 1; fi
	@set -e; for s in $(IMAGE_SERVICES); do \
		echo "docker build $(IMAGE_REPO)/$$s:$(IMAGE_TAG)"; \
		DOCKER_BUILDKIT=1 docker build -f deploy/docker/Dockerfile --build-arg SERVICE=$$s -t $(IMAGE_REPO)/$$s:$(IMAGE_TAG) .; done

.PHONY: test-docker
test-docker: build ## The end-to-end and crash tests against real Apache Kafka and PostgreSQL containers (testcontainers-go, build tag docker); each skips, saying why, where no Docker engine answers.
	@set -e; \
	url=$$($(BIN)/devstack ensure-postgres); \
	trap '$(BIN)/devstack stop-postgres >/dev/null 2>&1 || true' EXIT; \
	PGTEST_URL="$$url" FINANCE_BIN_DIR=$(BIN) go test -tags docker -run 'Docker' -count=1 -v -timeout 30m ./services/devstack/

.PHONY: mermaidcheck
mermaidcheck: ## Install Mermaid's parser (tools/mermaidcheck: mermaid and jsdom, pinned in its package-lock.json) into .run/tools/mermaidcheck with npm ci, unless it is there.
	@command -v node >/dev/null && command -v npm >/dev/null || { \
		echo "make docs-check needs Node.js and npm for Mermaid's parser (Debian: apt-get install nodejs npm)"; exit 1; }
	@mkdir -p $(MERMAIDCHECK)
	@cp tools/mermaidcheck/parse.mjs $(MERMAIDCHECK)/parse.mjs
	@if ! cmp -s tools/mermaidcheck/package-lock.json $(MERMAIDCHECK)/node_modules/.docscheck-lock.json; then \
		echo "npm ci: Mermaid's parser into $(MERMAIDCHECK) (the first time takes a minute)"; \
		cp tools/mermaidcheck/package.json tools/mermaidcheck/package-lock.json $(MERMAIDCHECK)/ && \
		(cd $(MERMAIDCHECK) && npm ci --no-audit --no-fund --loglevel=error) && \
		cp tools/mermaidcheck/package-lock.json $(MERMAIDCHECK)/node_modules/.docscheck-lock.json; fi

.PHONY: docs-check
docs-check: mermaidcheck ## Check docs/*.md and every README.md: links and #anchors resolve, every Mermaid block passes Mermaid's own parser, every measurement of docs/design.md links a kept run or a measurement record, kept runs stay small (tools/docscheck says the rules).
	@cd tools/docscheck && DOCSCHECK_MERMAID=$(MERMAIDCHECK)/parse.mjs GOWORK=off go test -count=1 ./... && \
		GOWORK=off go run . -root $(CURDIR) -mermaid $(MERMAIDCHECK)/parse.mjs
