# Headwater: the two commands that matter are `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
PYTEST := .venv/bin/pytest
HEADWATER := target/release/headwater

.PHONY: run build test test-rust test-clients test-python python-wheel go-lib test-go lint fmt deps bench clean sim sim-build sim-test

## Start a single broker on 127.0.0.1:9092 with its data under ./data.
run: build
	$(HEADWATER) serve --listen 127.0.0.1:9092 --data-dir ./data

build:
	$(CARGO) build --release --locked

## Install what the tests need, then run every test.
test: lint test-rust deps build test-clients test-python test-go sim

test-rust:
	$(CARGO) test --release --locked --workspace --exclude headwater-python

## The Python SDK: build its abi3 wheel with maturin, install it into .venv, run its tests.
python-wheel: deps
	rm -f target/wheels/headwater-*.whl
	PYO3_PYTHON=$(CURDIR)/.venv/bin/python .venv/bin/maturin build --release --locked -m bindings/python/Cargo.toml -i .venv/bin/python
	.venv/bin/python -m pip install -q --disable-pip-version-check --force-reinstall --no-deps target/wheels/headwater-*.whl

test-python: python-wheel
	.venv/bin/python -m mypy.stubtest headwater._headwater
	.venv/bin/python -m mypy bindings/python/python/headwater
	$(PYTEST) -q bindings/python/tests

## The Go SDK: the C ABI's static library (built by `build`) copied where cgo links it, then
## go vet and go test -race over the package and its interop tests with franz-go.
go-lib: build
	mkdir -p bindings/go/lib
	cp target/release/libheadwater_ffi.a bindings/go/lib/

test-go: go-lib
	cd bindings/go && gofmt -l . | (! grep .) && go vet ./... && go test -race -count=1 ./...
	cd bindings/go/interop && go vet ./... && go test -race -count=1 ./...

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

## The deterministic simulator (madsim), built into its own target dir with --cfg madsim.
## `make sim` runs SIM_SEEDS seeds (about five minutes here), checks that each planted bug is
## caught and that a run is deterministic; `make sim SEED=S [PLANTED=bug]` replays one seed.
SIM_SEEDS ?= 700
SIM_CARGO := RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim $(CARGO)
SIM_BIN := target/sim/release/headwater-sim
PLANTED_BUGS := ack-before-fsync keep-torn-tail forget-producer-state same-generation early-handover

sim-build:
	$(SIM_CARGO) build --release --locked -p headwater-sim

sim-test:
	$(SIM_CARGO) clippy --release --locked -p headwater-sim --all-targets -- -D warnings
	$(SIM_CARGO) test --release --locked -p headwater-sim

ifdef SEED
sim: sim-build
	$(SIM_BIN) --seed $(SEED) $(if $(PLANTED),--planted $(PLANTED))
else
sim: sim-build sim-test
	$(SIM_BIN) --seed 1 --check-determinism
	@for bug in $(PLANTED_BUGS); do $(SIM_BIN) --planted $$bug --seeds 50 | tail -1 || exit 1; done
	$(SIM_BIN) --seeds $(SIM_SEEDS)
endif

## Benchmark Headwater against Apache Kafka on this machine, and the SDKs against confluent-kafka
## and franz-go; writes docs/benchmarks.md.
bench: deps build python-wheel go-lib
	bench/run.sh

clean:
	$(CARGO) clean
	rm -rf .deps .venv
