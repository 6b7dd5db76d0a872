# Weir build, test and deploy entry points. `make help` lists the targets.

# The toolchain lives here on the build machines; an earlier go on PATH still wins.
export PATH := $(PATH):/usr/local/go/bin

GO        ?= go
VERSION   ?= 0.1.0
COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null)
BIN       ?= bin/weir
IMAGE_BIN ?= bin/weir-linux-amd64
IMAGE     ?= weir
PKG       := github.com/weir-streaming/weir
LDFLAGS   := -s -w -X $(PKG)/version.Version=$(VERSION) -X $(PKG)/version.Commit=$(COMMIT)

# `docker compose` (plugin) when it works, else the standalone docker-compose.
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

.DEFAULT_GOAL := help

.PHONY: help build check test image up down demo chaos clean

help: ## list the targets
	@echo "usage: make TARGET [VERSION=$(VERSION)]"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build the static weir binary (bin/weir; VERSION=, BIN=)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/weir

check: ## gofmt (must list nothing) and go vet
	@unformatted="$$(gofmt -l .)"; \
	if [ -n "$$unformatted" ]; then \
		echo "gofmt: these files need formatting (run gofmt -w):"; echo "$$unformatted"; exit 1; \
	fi
	$(GO) vet ./...

test: ## run every Go test (Docker tests skip themselves when no engine answers)
	$(GO) test -count=1 -timeout 15m ./...

image: ## build the FROM-scratch image weir:VERSION and weir:latest
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(IMAGE_BIN) ./cmd/weir
	docker build -f deploy/Dockerfile --build-arg WEIR_BIN=$(IMAGE_BIN) --build-arg VERSION=$(VERSION) \
		-t $(IMAGE):$(VERSION) -t $(IMAGE):latest .

up: image ## start the 3-node compose cluster (API on 127.0.0.1:17071-17073)
	WEIR_VERSION=$(VERSION) $(COMPOSE) up -d

down: ## stop the compose cluster and delete its volumes
	$(COMPOSE) down -v

demo: ## build two releases, start a local cluster on the old one, upgrade it to the new one, check the data
	./scripts/demo.sh

chaos: ## run the chaos suite under test/chaos (when there is one)
	@if [ -d test/chaos ]; then \
		WEIR_CHAOS_LONG=1 $(GO) test -count=1 -timeout 60m ./test/chaos/...; \
	else \
		echo "no chaos suite yet (test/chaos does not exist)"; \
	fi

clean: ## remove build outputs and test artifacts
	rm -rf bin/ cover.out coverage.out coverage.html *.coverprofile
	find test -type d -name artifacts -prune -exec rm -rf {} + 2>/dev/null || true
