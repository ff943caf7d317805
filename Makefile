# mcp-relay: the Kong plugin, its Kong stand-in, and their tests.
GO      ?= go
BIN     := bin
PLUGIN  := $(BIN)/mcp-relay
NODE_DIR := test/node
# The MCP clients of the client matrix (test/e2e/clients_test.go), pinned.
CLIENTS_DIR := test/clients

.PHONY: build run test test-standin test-kong lint fuzz clean node-deps client-deps bench soak

build: $(PLUGIN)

# The executable's name is the plugin's name in Kong.
$(PLUGIN): FORCE
	CGO_ENABLED=0 $(GO) build -trimpath -o $(PLUGIN) ./plugin

# The main job on the embedded default (in-memory session store): one Kong
# node on $(LISTEN) from kong/kong.yaml (real Kong 3.9.1 where the realkong
# harness can run it, the Kong stand-in otherwise; GATEWAY=kong|standin
# chooses; the banner says which, with its pid), demo MCP replicas on
# $(REPLICAS) (each its own process, pids in the banner) and the plugin's
# metrics on $(METRICS) (empty: off). Every address is checked first.
# Ctrl-C, or a SIGINT or SIGTERM to make or the demo, stops everything.
# Example: make run LISTEN=127.0.0.1:8080 METRICS=
LISTEN   ?= 127.0.0.1:8000
REPLICAS ?= 127.0.0.1:9101,127.0.0.1:9102
METRICS  ?= 127.0.0.1:9542
GATEWAY  ?= auto
run: build
	$(GO) build -o $(BIN)/demo ./test/cmd/demo
	exec $(BIN)/demo -gateway '$(GATEWAY)' -plugin $(PLUGIN) -deck kong/kong.yaml -listen '$(LISTEN)' -replicas '$(REPLICAS)' -metrics-addr '$(METRICS)'

# Installs the node MCP peers from their lock file: the reference server and
# the TypeScript SDK client (test/node/client.mjs), about 40 MB.
node-deps: $(NODE_DIR)/node_modules/.package-lock.json

# Installs the client matrix's MCP clients from their lock file (mcp-remote,
# MCP Inspector, Claude Code, Gemini CLI, ...: about 830 MB); the tests need them.
client-deps: $(CLIENTS_DIR)/node_modules/.package-lock.json

# npm ci again whenever a lock file changed since the last install.
%/node_modules/.package-lock.json: %/package-lock.json
	cd $* && npm ci --no-audit --no-fund
	@touch $@

# The test command (CI runs this): test-standin, then test-kong. Both need
# redis-server and node on PATH; test-kong needs the realkong harness.
test: test-standin test-kong

# Vet, then every test with the race detector: the unit tests, and the
# end-to-end suite through the Kong stand-in (test/standin).
test-standin: node-deps client-deps build
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...

# The end-to-end suite through real Kong 3.9.1 nodes (the realkong harness:
# ../shared/realkong next to the checkout, or $$MCP_RELAY_REALKONG; without
# it this fails saying how to get real Kong). It ends with the list of tests
# and checks that ran on the stand-in only, and why. No race detector: it
# would check only the tests' own code, which test-standin already runs
# under it. KONG_RUN=Regexp narrows it (go test -run).
KONG_RUN ?= .
test-kong: node-deps client-deps build
	cd test/e2e && MCP_RELAY_GATEWAY=kong $(GO) test -count=1 -timeout 30m -run '$(KONG_RUN)'

# The reliability tests' long profile, on demand: the soak
# with 2,000 sessions for 2 minutes (Redis restarted mid-run), the timing
# test with 200 samples of each kind, 60 replica restarts in place under
# traffic, and the fault tests, without the race
# detector (the figures are the plugin's own), printing every figure.
SOAK_TESTS := TestSoak|TestRecoveryRestartsUnderTraffic|TestSessionTimingEquality|TestRedisOutage|TestRedisSlow|TestRedisClusterLosesMaster|TestReplicaDeath|TestPluginKilledDuringTraffic
soak:
	MCP_RELAY_SOAK=long $(GO) test -count=1 -timeout 20m -v -run '^($(SOAK_TESTS))$$' ./test/e2e/

lint:
	$(GO) vet ./...
	$(GO) vet -tags panictest ./handler
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.6.1 ./...

# Every fuzz target for a bounded number of inputs (FUZZ_EXECS each), on top
# of the committed seed corpora that `make test` already runs. Counted in
# executions, not seconds: go1.26's -fuzztime=Ns can end in a spurious
# "context deadline exceeded".
FUZZ_EXECS ?= 30000x
FUZZ_TARGETS := envelope:FuzzParse envelope:FuzzDecodeHeader schema:FuzzParse handler:FuzzValidSessionID handler:FuzzReadServed handler:FuzzUpstreamMessage handler/rules:FuzzGlobMatch handler/rules:FuzzFilterList handler/toolpin:FuzzCanonical handler/toolpin:FuzzReadAnswer session:FuzzDecodeRecord session:FuzzReadSnapshot
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t#*:}; \
	  echo "fuzz ./$$pkg $$fn ($(FUZZ_EXECS))"; \
	  $(GO) test ./$$pkg -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZ_EXECS) -fuzzminimizetime 10s >/dev/null \
	    || { echo "fuzz ./$$pkg $$fn failed: see testdata/fuzz/$$fn"; exit 1; }; done

clean:
	rm -rf $(BIN)

FORCE:

# Measurements: PDK round trips per request kind, throughput with
# and without mcp-relay, Go cost, store cost (memory, Redis with and without
# the per-node cache; needs redis-server on PATH), bytes per session in the
# memory store and in Redis, what a request costs in real Kong (needs the
# realkong harness and wrk); one markdown report on stdout and in
# bench/results.md. BENCHFLAGS=-short for a smoke run.
bench: build
	$(GO) run ./test/cmd/bench -plugin $(PLUGIN) -out bench/results.md $(BENCHFLAGS)
