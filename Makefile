# The commands developers and CI run. `make demo` is the main job, `make test`
# runs every check; both install what they need first. `make check` is the
# fast loop between edits: formatting, clippy and every test that needs no
# root, no service and no network.

CARGO ?= cargo
KEEP ?=

.PHONY: all setup setup-build build demo check test fmt-check clippy fuzz-smoke sim-smoke image

all: build

setup:
	@bash scripts/setup

# Only what compiling needs (protoc), so `make check` needs no root once it is there.
setup-build:
	@bash scripts/setup build

build: setup-build
	$(CARGO) build --workspace --all-targets

demo: setup
	$(CARGO) build -p peerpull -p peerpull-e2e --bins
	KEEP=$(KEEP) ./target/debug/peerpull-demo

fmt-check:
	$(CARGO) fmt --all -- --check

clippy: setup-build
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Test targets that need more than a Rust toolchain, besides every test of
# the end-to-end package (tests/, peerpull-e2e): real containerd, the registry,
# skopeo, runc, Chromium or network namespaces (root), or Go with Sprig.
#   store/tests/containerd      the containerd store against real containerd
#   testbed/tests/services.rs   the testbed's containerd, registry and browser
#   bench/tests/smoke.rs        every benchmark scenario, on the testbed
#   chart-tests/tests/render.rs the Helm chart through a Go template renderer
ROOT_TESTS := crates/store/tests/containerd crates/testbed/tests/services.rs \
	crates/bench/tests/smoke.rs crates/chart-tests/tests/render.rs
# Every other test target of crates/ (cargo finds tests/NAME.rs and
# tests/NAME/main.rs), so a new test joins `make check` by itself.
FAST_TESTS := $(sort $(basename $(notdir $(filter-out $(ROOT_TESTS), \
	$(wildcard crates/*/tests/*.rs) $(patsubst %/main.rs,%,$(wildcard crates/*/tests/*/main.rs))))))

# Unit tests (libraries and binaries), the integration tests above and the
# doc tests. Same packages and features as `make test`, so the two share one
# build: switching between them compiles nothing.
check: setup-build fmt-check clippy
	$(CARGO) test --workspace --exclude peerpull-e2e --lib --bins $(addprefix --test ,$(FAST_TESTS))
	$(CARGO) test --workspace --doc

test: setup fmt-check clippy
	$(CARGO) build -p peerpull
	$(CARGO) test --workspace
	$(MAKE) sim-smoke
	$(MAKE) fuzz-smoke

# The container image the Helm chart runs, as an OCI archive (no base image,
# no registry): `ctr images import target/image/peerpull.oci.tar`,
# `skopeo copy oci-archive:target/image/peerpull.oci.tar docker://…`.
image: setup
	$(CARGO) build --release --locked -p peerpull -p peerpull-image
	./target/release/peerpull-image --binary target/release/peerpull --out target/image/peerpull.oci.tar

# The routing simulation (sim/, a workspace of its own) at a tiny size, so
# it cannot rot: it fails if a lookup finds nothing. `sim/README.md` runs it
# at scale.
sim-smoke:
	cd sim && $(CARGO) fmt --check && $(CARGO) clippy --locked --all-targets -- -D warnings
	cd sim && $(CARGO) run --locked -q -- --routers 8,16 --keys 20 --lookups 20 --rest-minutes 1

# Each fuzz target for a few seconds from its seeds (nightly, cargo-fuzz);
# `scripts/fuzz 3600 <target>` runs one for an hour.
fuzz-smoke: setup
	bash scripts/fuzz 5
