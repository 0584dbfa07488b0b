# The commands developers and CI run. `make demo` is the main job, `make test`
# runs every check; both install what they need first. `make check` is the
# fast loop between edits: formatting, clippy and every test that needs no
# root, no service and no network.

CARGO ?= cargo
KEEP ?=
# Where cargo builds (CARGO_TARGET_DIR and cargo's config count); the tests
# find the peerpull binary in its debug/.
TARGET_DIR = $(shell $(CARGO) metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')

.PHONY: all setup setup-build build demo check test test-containerd fmt-check clippy fuzz-smoke sim-smoke image

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
# skopeo, runc, Chromium or network namespaces (root). The chart tests
# (crates/chart-tests) need only helm, which `setup-build` installs, and run
# in both.
#   store/tests/containerd      the containerd store against real containerd
#   testbed/tests/services.rs   the testbed's containerd, registry and browser
#   bench/tests/smoke.rs        every benchmark scenario, on the testbed
ROOT_TESTS := crates/store/tests/containerd crates/testbed/tests/services.rs \
	crates/bench/tests/smoke.rs
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

# `build` compiles what `cargo test` runs (the same units) and leaves every
# binary in the target directory. PEERPULL_BIN names peerpull's to the
# tests, so the benchmark's smoke test does not run `cargo build -p
# peerpull`: features resolved for that package alone differ, and 55 crates
# (libp2p, tokio, hyper, tonic and ours) would be compiled a second time.
test: setup fmt-check clippy build
	PEERPULL_BIN=$(TARGET_DIR)/debug/peerpull $(CARGO) test --workspace
	$(MAKE) test-containerd
	$(MAKE) sim-smoke
	$(MAKE) fuzz-smoke

# The core end-to-end scenarios again on the other containerd releases
# clusters run (`make test` runs them on the system's 1.6 above; scripts/setup
# installs 1.7 and 2.1 beside it, PEERPULL_CONTAINERD picks one for the
# testbed). `--workspace` keeps the `build` step's features, so nothing is
# compiled again; it also runs crates/mirror's `tags` test, which is quick.
# tests/tests/containerd2.rs runs containerd 2.1 itself in the run above.
# `preheat` checks pinning against image GC only where CRI reports pins
# (1.7 and later); `landing` checks a blob is findable before its image is
# done only where containerd says when it lands (2.1). `private_images`
# needs containerd to answer the mirror's challenge with the pull's credentials.
CONTAINERD_VERSIONS := 2.1 1.7
CONTAINERD_TESTS := outage pull_through tags node_setup lifecycle preheat landing ipv6 private_images
test-containerd: $(addprefix test-containerd-,$(CONTAINERD_VERSIONS))
test-containerd-%: setup build
	PEERPULL_CONTAINERD=$* PEERPULL_BIN=$(TARGET_DIR)/debug/peerpull \
		$(CARGO) test --workspace $(addprefix --test ,$(CONTAINERD_TESTS))

# The container image the Helm chart runs, as an OCI archive (no base image,
# no registry): `ctr images import target/image/peerpull.oci.tar`,
# `skopeo copy oci-archive:target/image/peerpull.oci.tar docker://…`.
image: setup
	$(CARGO) build --release --locked -p peerpull -p peerpull-image
	./target/release/peerpull-image --binary target/release/peerpull --out target/image/peerpull.oci.tar

# The routing simulation (sim/, a workspace of its own) at a tiny size, so
# it cannot rot: it fails if a lookup finds nothing. `sim/README.md` runs it
# at scale. It builds into the main target directory with the main
# workspace's [profile] sections, so the crates it shares with the product
# at the same versions and features (224 of its 301 units) come from
# clippy's and the tests' build; libp2p above the timer the sim replaces,
# tokio and ours are compiled again.
SIM_CARGO = CARGO_TARGET_DIR=$(TARGET_DIR) $(CARGO)
SIM_PROFILE = --config $(TARGET_DIR)/workspace-profile.toml
sim-smoke:
	mkdir -p $(TARGET_DIR) && awk '/^\[/ { p = /^\[profile/ } p' Cargo.toml > $(TARGET_DIR)/workspace-profile.toml
	cd sim && $(CARGO) fmt --check && $(SIM_CARGO) clippy $(SIM_PROFILE) --locked --all-targets -- -D warnings
	cd sim && $(SIM_CARGO) run $(SIM_PROFILE) --locked -q -- --routers 8,16 --keys 20 --lookups 20 --rest-minutes 1

# Each fuzz target for a few seconds from its seeds (nightly, cargo-fuzz);
# `scripts/fuzz 3600 <target>` runs one for an hour.
fuzz-smoke: setup
	bash scripts/fuzz 5
