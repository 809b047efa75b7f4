# sgp — build, run and test. `make run` works on a fresh machine with Rust (the page's one
# npm file, Bootstrap's CSS, is committed in client/vendor/); `make test` also needs Node.js:
# npm fetches the client's packages (Bootstrap, to check client/vendor/ against, and
# playwright-core for the browser tests), and `make test` installs Debian's chromium, nginx,
# caddy and openssl for the proxy tests, systemd for systemd-analyze, and prometheus for
# promtool, which checks the server's /metrics.

CARGO ?= cargo
NPM ?= npm
PORT ?= 8080
CHROMIUM ?= /usr/bin/chromium
NGINX ?= /usr/sbin/nginx
CADDY ?= /usr/bin/caddy
OPENSSL ?= /usr/bin/openssl
PROMTOOL ?= /usr/bin/promtool

.PHONY: all build release run test test-rust test-vectors test-js test-browser test-proxy test-shard test-install test-vendor test-dist vendor dist chromium proxies systemd promtool clean audit

all: release

# The client's npm packages, fetched once per change of the lock file.
client/node_modules/.stamp: client/package.json client/package-lock.json
	cd client && $(NPM) ci --no-audit --no-fund
	touch $@

build:
	$(CARGO) build

release:
	$(CARGO) build --release

## Build in release mode and serve on 127.0.0.1:$(PORT).
run: release
	./target/release/sgp serve --port $(PORT)

## Every test: Rust (unit, vectors, integration), the vectors' independent Python check,
## JavaScript (unit), the install without Node and the systemd unit, browser (end to end).
test: test-rust test-vectors test-js test-install test-browser test-shard

## tests/observability.rs runs promtool on the server's /metrics. The two slowest test files
## wait on rounds and delayed paths far more than they compute (bench_net's namespace pair
## alone takes 30-120 s): they run beside the rest, each holding on a busy machine.
RUST_SLOW = bench_net audit
RUST_REST = $(filter-out $(RUST_SLOW),$(basename $(notdir $(wildcard tests/*.rs))))
test-rust: client/node_modules/.stamp promtool
	$(CARGO) test --all-targets --no-run
	@mkdir -p target; \
	PROMTOOL=$(PROMTOOL) $(CARGO) test $(RUST_SLOW:%=--test %) > target/test-rust-slow.log 2>&1 & slow=$$!; \
	PROMTOOL=$(PROMTOOL) $(CARGO) test --lib --bins $(RUST_REST:%=--test %); rest=$$?; \
	wait $$slow; s=$$?; echo "---- $(RUST_SLOW), run beside the rest:"; cat target/test-rust-slow.log; \
	test $$rest -eq 0 && test $$s -eq 0

## The derivation's vectors recomputed by a second implementation (python3, standard
## library only; a few seconds).
test-vectors:
	python3 tests/gen_vectors.py --check

test-js: client/node_modules/.stamp
	node --test client/test/*.test.mjs

## Every browser test, the proxy tests (client/test/e2e/proxy.test.mjs) among them; the
## sharded set-up's (shard.test.mjs) is test-shard's.
E2E_ENV = SGP_BIN=$(CURDIR)/target/debug/sgp CHROMIUM=$(CHROMIUM) NGINX=$(NGINX) CADDY=$(CADDY) OPENSSL=$(OPENSSL)
E2E_SHARD = client/test/e2e/shard.test.mjs
test-browser: client/node_modules/.stamp chromium proxies build
	$(E2E_ENV) node --test --test-concurrency=1 $(filter-out $(E2E_SHARD),$(wildcard client/test/e2e/*.test.mjs))

## The proxy tests alone: the page and `sgp pair` over https through nginx and Caddy (with
## deploy/'s configs) and through sgp's own TLS.
test-proxy: client/node_modules/.stamp chromium proxies build
	$(E2E_ENV) node --test --test-concurrency=1 client/test/e2e/proxy.test.mjs

## Many servers behind nginx (issue 17): three sgp serve behind deploy/nginx-sharded.conf, 30
## pairs and more, an observer, two Chromium tabs, one server stopped (about a minute and a half).
test-shard: client/node_modules/.stamp chromium proxies build
	$(E2E_ENV) node --test --test-concurrency=1 $(E2E_SHARD)

## What the page uses from npm packages, committed in client/vendor/ so that the build needs
## no Node (build.rs embeds client/vendor/; it never reads node_modules).
VENDOR = bootstrap/dist/css/bootstrap.min.css

## Refresh client/vendor/ from the npm packages (after changing client/package.json), then commit it.
vendor: client/node_modules/.stamp
	mkdir -p client/vendor
	for f in $(VENDOR); do cp client/node_modules/$$f client/vendor/; done

## client/vendor/ holds exactly $(VENDOR), byte for byte as npm ci installs them.
test-vendor: client/node_modules/.stamp
	@for f in $(VENDOR); do \
	  cmp -s client/node_modules/$$f client/vendor/$${f##*/} \
	    || { echo "test-vendor: FAIL: client/vendor/$${f##*/} is not the npm package's $$f: run make vendor and commit it" >&2; exit 1; }; \
	done
	@extra=$$(ls -A client/vendor | grep -vxF "$$(printf '%s\n' $(notdir $(VENDOR)))" || true); \
	if [ -n "$$extra" ]; then echo "test-vendor: FAIL: client/vendor/ has files not in the Makefile's VENDOR: $$extra" >&2; exit 1; fi
	@echo "test-vendor: client/vendor/ is the npm packages' $(notdir $(VENDOR))"

## `cargo install` from a copy of the tree without node_modules, node or npm; the installed
## binary serves the page; `systemd-analyze verify` passes deploy/sgp.service (tests/install.sh).
test-install: test-vendor systemd
	CARGO_TARGET_DIR=$(CURDIR)/target tests/install.sh

## A tarball to install from: dist/sgp-VERSION-ARCH-linux.tar.gz, holding sgp-VERSION/ with the
## release binary, README.md, LICENSE, deploy/ (the systemd unit, nginx and Caddy) and
## docs/deploy.md. Sorted, owned by 0, every file dated from the last commit, so two builds of
## one commit make the same tarball when the binaries are the same.
VERSION = $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
ARCH = $(shell uname -m)
DIST = dist/sgp-$(VERSION)-$(ARCH)-linux.tar.gz
DIST_FILES = README.md LICENSE deploy/sgp.service deploy/nginx.conf deploy/nginx-sharded.conf deploy/Caddyfile docs/deploy.md
dist: release
	rm -rf dist/sgp-$(VERSION) $(DIST)
	mkdir -p dist/sgp-$(VERSION)
	cp target/release/sgp dist/sgp-$(VERSION)/
	cp --parents $(DIST_FILES) dist/sgp-$(VERSION)/
	tar -C dist --sort=name --owner=0 --group=0 --numeric-owner --mode='u=rwX,go=rX' \
	  --mtime=@$$(git log -1 --format=%ct 2>/dev/null || echo 0) \
	  -cf - sgp-$(VERSION) | gzip -9n > $(DIST)
	rm -rf dist/sgp-$(VERSION)
	@echo "made $(DIST)"

## The tarball holds exactly what dist says, and its binary runs (needs the release build: a
## minute or more after a change to src/, so it is not part of `make test`).
test-dist: dist
	tests/dist.sh $(DIST) sgp-$(VERSION) "$(VERSION)" $(DIST_FILES)

## The full eavesdropper's audit (SECURITY.md): real pairs on loopback, across network
## namespaces with 20 ± 5 ms of delay (needs root), the field profiles of issue 14 with
## sgp's adapting defaults (wifi, wan-near-far, wan-far across namespaces; busy: two busy
## loops), Chromium tabs (alone, through the lan path, with two busy loops), the leaky testing
## schedules, and loopback with spans in every round (`--testing-hold-post`), each to ≥ 100 000
## scored entries or its time limit; about 8 hours (9.2 if every scenario ran to its time
## limit), 6.8 of them the three Chromium scenarios (45 minutes alone, 65 through the lan path,
## 5 hours with two busy loops, which starve the tab in the background). `--only` in
## audit/run.py picks scenarios. The records (key material)
## stay in AUDIT_OUT, a 0700 folder. The posters, server and delay relays are light but
## timing-sensitive, so they run at normal priority; the attacker, which is CPU-heavy, runs
## under nice.
AUDIT_OUT ?= /tmp/sgp-audit-$(shell date -u +%Y%m%d-%H%M%S)
audit: client/node_modules/.stamp chromium release
	python3 audit/run.py --sgp $(CURDIR)/target/release/sgp --out $(AUDIT_OUT)

## Debian's chromium for the browser tests (as root, or with sudo).
chromium:
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  echo "installing Debian's chromium for the browser tests"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; \
	fi

## Debian's prometheus package for its promtool, which checks /metrics in the Rust tests (as
## root, or with sudo). Only the tool is used; on a machine with systemd, Debian also starts
## the package's own service (port 9090): `systemctl disable --now prometheus` if unwanted.
promtool:
	@if [ ! -x "$(PROMTOOL)" ]; then \
	  echo "installing Debian's prometheus for promtool"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus; \
	fi

## Debian's nginx, caddy and openssl for the proxy tests (as root, or with sudo). The tests run
## their own nginx and caddy from a temporary folder; on a machine with systemd, Debian also
## starts the packages' own services (nginx on port 80): `systemctl disable --now nginx caddy`
## if you do not want them.
proxies:
	@missing=; \
	[ -x "$(NGINX)" ] || missing="$$missing nginx"; \
	[ -x "$(CADDY)" ] || missing="$$missing caddy"; \
	[ -x "$(OPENSSL)" ] || missing="$$missing openssl"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian's$$missing for the proxy tests"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

## Debian's systemd, for systemd-analyze in test-install (as root, or with sudo). In a container
## it only installs files: systemd does not start unless it is the container's init.
systemd:
	@if ! command -v systemd-analyze >/dev/null; then \
	  echo "installing Debian's systemd for systemd-analyze (the systemd unit's check)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends systemd; \
	fi

clean:
	$(CARGO) clean
	rm -rf client/node_modules dist

## Many servers behind nginx (issue 17): `sgp bench load` through deploy/nginx-sharded.conf with
## 1, 2 and 3 servers and against one server directly, `sgp bench key` through nginx and
## directly (client/test/bench-shard.mjs; SERVERS=0,1,2,3 ROOMS=200 SECONDS=2 RUNS=1 PAIRS=10).
.PHONY: bench-shard
bench-shard: client/node_modules/.stamp proxies release
	SGP_BIN=$(CURDIR)/target/release/sgp NGINX=$(NGINX) OPENSSL=$(OPENSSL) node client/test/bench-shard.mjs

## Measure two Chromium tabs to a confirmed key (median of RUNS=10) and the page's weight;
## PROFILE=loopback (default), lan, wifi or busy puts `sgp bench net`'s path (or busy loops)
## between the tabs and the server, e.g. `make bench-browser PROFILE=wifi RUNS=3`.
PROFILE ?= loopback
.PHONY: bench-browser
bench-browser: client/node_modules/.stamp chromium release
	SGP_BIN=$(CURDIR)/target/release/sgp CHROMIUM=$(CHROMIUM) PROFILE=$(PROFILE) node client/test/bench-browser.mjs
