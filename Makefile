# outbox-relay: `make demo` shows it working, `make test` runs the whole suite. Both install what
# they need (Debian packages, then the build) and use throwaway servers they start and stop.
SWIFT ?= swift
export PATH := $(PATH):/opt/swift/usr/bin
BIN_DIR = $(shell $(SWIFT) build --show-bin-path 2>/dev/null)

TEST_PACKAGES = ruby ruby-sidekiq ruby-redis-namespace systemd prometheus influxdb python3-psycopg2 ruby-activerecord ruby-pg postgresql-client liblua5.1-0-dev faketime lintian debootstrap systemd-container util-linux procps

ROWS ?= 100000
REPEAT ?= 5
RESULTS ?= results
RELEASE_DIR = $(shell $(SWIFT) build -c release --show-bin-path 2>/dev/null)

PREFIX ?= /usr
DESTDIR ?=
STATIC_DIR = .build-static/release
STATIC_BIN = $(STATIC_DIR)/outbox-relay
VERSION = $(shell sed -n 's/.*static let current = "\(.*\)"/\1/p' Sources/outbox-relay/OutboxRelayCommand.swift)
# The Debian revision: the package is 0.1.0-1 (deploy/debian/changelog names the same version).
DEB_REVISION ?= 1
DEB_VERSION = $(VERSION)-$(DEB_REVISION)
ARCH = $(shell dpkg --print-architecture)
DEB = build/deb/outbox-relay_$(DEB_VERSION)_$(ARCH).deb
# What the static binary and the package are made of: `make deb` rebuilds only when one changed.
SWIFT_SOURCES = $(shell find Sources -type f) Package.swift
DEB_INPUTS = $(STATIC_BIN) deploy/outbox-relay@.service $(wildcard deploy/debian/*) $(wildcard config/*) README.md scripts/deb.sh

.PHONY: all deps test-deps build release static install deb deb-up-to-date lintian container-test test demo bench simulate mutations clean

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
static: $(STATIC_BIN)

# SwiftPM leaves the binary alone when nothing changed, so touch it for make's sake.
$(STATIC_BIN): $(SWIFT_SOURCES) | deps
	$(SWIFT) build -c release --static-swift-stdlib --scratch-path .build-static --product outbox-relay
	@touch $@

install: static
	install -D -m 755 -s $(STATIC_DIR)/outbox-relay $(DESTDIR)$(PREFIX)/bin/outbox-relay
	install -d -m 755 $(DESTDIR)$(PREFIX)/lib/systemd/system $(DESTDIR)$(PREFIX)/share/doc/outbox-relay/examples
	sed 's|/usr/bin/outbox-relay|$(PREFIX)/bin/outbox-relay|' deploy/outbox-relay@.service > $(DESTDIR)$(PREFIX)/lib/systemd/system/outbox-relay@.service
	chmod 644 $(DESTDIR)$(PREFIX)/lib/systemd/system/outbox-relay@.service
	install -m 644 config/*.env config/credentials.conf $(DESTDIR)$(PREFIX)/share/doc/outbox-relay/examples/
	install -m 644 README.md $(DESTDIR)$(PREFIX)/share/doc/outbox-relay/
	install -d -m 750 $(DESTDIR)/etc/outbox-relay

deb: $(DEB)

$(DEB): $(DEB_INPUTS)
	scripts/deb.sh "$(DEB_VERSION)" build/deb

# A second `make deb` right after the first must do nothing (it runs within `make test`).
deb-up-to-date: $(DEB)
	@! $(MAKE) --no-print-directory -n deb | grep -E 'swift build|deb\.sh' || { echo "make deb would rebuild although nothing changed" >&2; exit 1; }
	@echo "make deb: $(DEB) is up to date"

# Debian's own checks of the package: no error allowed.
lintian: test-deps $(DEB)
	scripts/lintian.sh $(DEB)

# The package under real systemd: a Debian 12 container booted with systemd-nspawn
# (scripts/container-test.sh says what it checks).
container-test: test-deps $(DEB)
	scripts/with-servers.sh scripts/container-test.sh $(CURDIR)/$(DEB)

test: test-deps $(DEB)
	$(SWIFT) build --build-tests
	scripts/with-servers.sh env OUTBOX_RELAY_BIN="$(BIN_DIR)/outbox-relay" OUTBOX_RELAY_DEB="$(CURDIR)/$(DEB)" $(SWIFT) test --skip-build
	$(MAKE) --no-print-directory deb-up-to-date lintian container-test

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

# Throughput against PostgreSQL's own marking rate (and issue 16's cases: batch 100, 20,000 split
# keys, 4 KB against what PostgreSQL and Redis do alone), latency (with pgbench's Poisson arrivals
# too), memory and idle CPU of the binary that `make install` and `make deb` ship; prints a table,
# writes $(RESULTS)/bench.json and $(RESULTS)/bench.png, and each Poisson run's relay log and
# latencies beside them.
bench: release static
	scripts/with-servers.sh "$(RELEASE_DIR)/outbox-relay-bench" --relay "$(STATIC_DIR)/outbox-relay" --rows $(ROWS) --repeat $(REPEAT) --results $(RESULTS)
	@python3 -c "import matplotlib" 2>/dev/null || python3 -m pip install --quiet matplotlib 2>/dev/null \
		|| scripts/deps.sh python3-matplotlib
	$$(python3 -c "import matplotlib" 2>/dev/null && echo python3 || echo /usr/bin/python3) \
		scripts/bench-chart.py $(RESULTS)/bench.json $(RESULTS)/bench.png

clean:
	rm -rf .build .build-static build results
