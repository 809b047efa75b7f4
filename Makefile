# sgp — build, run and test. `make run` and `make test` work on a fresh machine with
# Rust installed: cargo fetches the crates; later steps install what they need.

CARGO ?= cargo
PORT ?= 8080

.PHONY: all build release run test test-rust clean

all: release

build:
	$(CARGO) build

release:
	$(CARGO) build --release

## Build in release mode and serve on 127.0.0.1:$(PORT).
run: release
	./target/release/sgp serve --port $(PORT)

## Every test.
test: test-rust

test-rust:
	$(CARGO) test --all-targets

clean:
	$(CARGO) clean
