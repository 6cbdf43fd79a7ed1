# outbox-relay: `make demo` shows it working, `make test` runs the whole suite. Both install what
# they need (Debian packages, then the build) and use throwaway servers they start and stop.
SWIFT ?= swift
export PATH := $(PATH):/opt/swift/usr/bin
BIN_DIR = $(shell $(SWIFT) build --show-bin-path 2>/dev/null)

TEST_PACKAGES = ruby ruby-sidekiq ruby-redis-namespace systemd prometheus

ROWS ?= 100000
RESULTS ?= results
RELEASE_DIR = $(shell $(SWIFT) build -c release --show-bin-path 2>/dev/null)

.PHONY: all deps test-deps build release test demo bench clean

all: build

deps:
	@scripts/deps.sh

# A real Sidekiq (Debian's ruby-sidekiq 6.4) runs the relayed jobs in the integration tests.
test-deps:
	@scripts/deps.sh $(TEST_PACKAGES)

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

test: test-deps
	$(SWIFT) build --build-tests
	scripts/with-servers.sh env OUTBOX_RELAY_BIN="$(BIN_DIR)/outbox-relay" $(SWIFT) test --skip-build

demo: build
	scripts/with-servers.sh scripts/demo.sh "$(BIN_DIR)/outbox-relay"

# Throughput against PostgreSQL's own marking rate, latency, memory and idle CPU of the release
# build; prints a table, writes $(RESULTS)/bench.json and $(RESULTS)/bench.png.
bench: release
	scripts/with-servers.sh "$(RELEASE_DIR)/outbox-relay-bench" --relay "$(RELEASE_DIR)/outbox-relay" --rows $(ROWS) --results $(RESULTS)
	@python3 -c "import matplotlib" 2>/dev/null || python3 -m pip install --quiet matplotlib
	python3 scripts/bench-chart.py $(RESULTS)/bench.json $(RESULTS)/bench.png

clean:
	rm -rf .build
