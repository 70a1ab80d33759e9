# Headwater: the two commands that matter are `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
PYTEST := .venv/bin/pytest
HEADWATER := target/release/headwater

.PHONY: run build test test-rust test-clients lint fmt deps bench clean

## Start a single broker on 127.0.0.1:9092 with its data under ./data.
run: build
	$(HEADWATER) serve --listen 127.0.0.1:9092 --data-dir ./data

build:
	$(CARGO) build --release --locked

## Install what the tests need, then run every test.
test: lint test-rust deps build test-clients

test-rust:
	$(CARGO) test --release --locked --workspace

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --locked --workspace --all-targets -- -D warnings
	@if $(CARGO) tree -p headwater-core -e normal --prefix none | grep -q '^tokio '; then \
		echo "headwater-core must not depend on tokio"; exit 1; fi

fmt:
	$(CARGO) fmt --all

deps:
	scripts/setup-test-deps.sh

test-clients: deps build
	HEADWATER_BIN=$(CURDIR)/$(HEADWATER) $(PYTEST) -q tests/clients

## Benchmark Headwater against Apache Kafka on this machine; writes docs/benchmarks.md.
bench: deps build
	bench/run.sh

clean:
	$(CARGO) clean
	rm -rf .deps .venv
