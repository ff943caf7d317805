# mcp-relay: the Kong plugin, its Kong stand-in, and their tests.
GO      ?= go
BIN     := bin
PLUGIN  := $(BIN)/mcp-relay
NODE_DIR := test/node

.PHONY: build run test test-short lint bench fuzz clean node-deps

build: $(PLUGIN)

# The executable's name is the plugin's name in Kong.
$(PLUGIN): FORCE
	CGO_ENABLED=0 $(GO) build -trimpath -o $(PLUGIN) ./plugin

# The main job on the embedded default (in-memory session store): one Kong
# stand-in node on 127.0.0.1:8000 from kong/kong.yaml, with two local demo
# MCP replicas on 127.0.0.1:9101 and :9102. Ctrl-C stops everything.
run: build
	$(GO) run ./test/cmd/demo -plugin $(PLUGIN) -deck kong/kong.yaml -listen 127.0.0.1:8000

# Installs the node MCP peers (reference server and SDK client) from the lock file.
node-deps:
	@if [ ! -d $(NODE_DIR)/node_modules ]; then cd $(NODE_DIR) && npm ci --no-audit --no-fund; fi

# The test command (CI runs this): vet, then every test with the race detector,
# end-to-end tests included (they need redis-server and node on PATH).
test: node-deps build
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...

lint:
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.6.1 ./...

clean:
	rm -rf $(BIN)

FORCE:
