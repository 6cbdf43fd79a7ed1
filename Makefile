# outbox-relay: `make demo` shows it working, `make test` runs the whole suite. Both install what
# they need (Debian packages, then the build) and use throwaway servers they start and stop.
SWIFT ?= swift
export PATH := $(PATH):/opt/swift/usr/bin
BIN_DIR = $(shell $(SWIFT) build --show-bin-path 2>/dev/null)

TEST_PACKAGES = ruby ruby-sidekiq ruby-redis-namespace systemd prometheus influxdb python3-psycopg2 ruby-activerecord ruby-pg postgresql-client liblua5.1-0-dev faketime

ROWS ?= 100000
REPEAT ?= 3
RESULTS ?= results
RELEASE_DIR = $(shell $(SWIFT) build -c release --show-bin-path 2>/dev/null)

PREFIX ?= /usr
DESTDIR ?=
STATIC_DIR = .build-static/release
VERSION = $(shell sed -n 's/.*static let current = "\(.*\)"/\1/p' Sources/outbox-relay/OutboxRelayCommand.swift)

.PHONY: all deps test-deps build release static install deb test demo bench simulate mutations clean

all: build

deps:
	@scripts/deps.sh

# A real Sidekiq (Debian's ruby-sidekiq 6.4) runs the relayed jobs in the integration tests; a real
# InfluxDB 1.6 takes --metrics-url's points; psql, ActiveRecord and psycopg2 run the README's
# "Writing jobs from your app" snippets.
test-deps:
	@scripts/deps.sh $(TEST_PACKAGES)

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

# The binary that `make install` and `make deb` ship: Swift's runtime linked in, so the host
# needs only Debian's libpq5, libhiredis0.14, libsystemd0 and libssl3.
static: deps
	$(SWIFT) build -c release --static-swift-stdlib --scratch-path .build-static --product outbox-relay

install: static
	install -D -m 755 -s $(STATIC_DIR)/outbox-relay $(DESTDIR)$(PREFIX)/bin/outbox-relay
	install -d -m 755 $(DESTDIR)$(PREFIX)/lib/systemd/system $(DESTDIR)$(PREFIX)/share/doc/outbox-relay/examples
	sed 's|/usr/bin/outbox-relay|$(PREFIX)/bin/outbox-relay|' deploy/outbox-relay@.service > $(DESTDIR)$(PREFIX)/lib/systemd/system/outbox-relay@.service
	chmod 644 $(DESTDIR)$(PREFIX)/lib/systemd/system/outbox-relay@.service
	install -m 644 config/*.env config/credentials.conf README.md $(DESTDIR)$(PREFIX)/share/doc/outbox-relay/examples/
	install -d -m 750 $(DESTDIR)/etc/outbox-relay

deb: static
	scripts/deb.sh "$(VERSION)" build/deb

test: test-deps deb
	$(SWIFT) build --build-tests
	scripts/with-servers.sh env OUTBOX_RELAY_BIN="$(BIN_DIR)/outbox-relay" OUTBOX_RELAY_DEB="$(CURDIR)/build/deb/outbox-relay_$(VERSION)_$$(dpkg --print-architecture).deb" $(SWIFT) test --skip-build

# The deterministic simulation alone, for long runs: `make simulate SEEDS=1000000`, or one seed
# replayed with its trace: `make simulate SIM_SEED=42 SIM_DISABLE=3,7`.
SEEDS ?= 10000
simulate: test-deps
	SIM_SEEDS=$(SEEDS) $(SWIFT) test --filter 'SimulationTests.SimulationTests/seedsKeepTheDeliveryPromise'

# Re-introduces each data-loss defect of issue 11 and checks that the simulation catches it.
mutations: test-deps
	scripts/mutations.sh $(SEEDS)

demo: build
	scripts/with-servers.sh scripts/demo.sh "$(BIN_DIR)/outbox-relay"

# Throughput against PostgreSQL's own marking rate, latency, memory and idle CPU of the binary
# that `make install` and `make deb` ship; prints a table, writes $(RESULTS)/bench.json and
# $(RESULTS)/bench.png.
bench: release static
	scripts/with-servers.sh "$(RELEASE_DIR)/outbox-relay-bench" --relay "$(STATIC_DIR)/outbox-relay" --rows $(ROWS) --repeat $(REPEAT) --results $(RESULTS)
	@python3 -c "import matplotlib" 2>/dev/null || python3 -m pip install --quiet matplotlib 2>/dev/null \
		|| scripts/deps.sh python3-matplotlib
	$$(python3 -c "import matplotlib" 2>/dev/null && echo python3 || echo /usr/bin/python3) \
		scripts/bench-chart.py $(RESULTS)/bench.json $(RESULTS)/bench.png

clean:
	rm -rf .build .build-static build results
