# The commands developers and CI run. `make demo` is the main job, `make test`
# runs every check; both install what they need first.

CARGO ?= cargo
KEEP ?=

.PHONY: all setup build demo test fmt-check clippy fuzz-smoke sim-smoke image

all: build

setup:
	@bash scripts/setup

build: setup
	$(CARGO) build --workspace --all-targets

demo: setup
	$(CARGO) build -p peerpull -p peerpull-e2e --bins
	KEEP=$(KEEP) ./target/debug/peerpull-demo

fmt-check:
	$(CARGO) fmt --all -- --check

clippy: setup
	$(CARGO) clippy --workspace --all-targets -- -D warnings

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
