//! peerpull benchmarks: reproducible scenarios on the testbed.
//!
//! Each scenario runs on real containerd nodes and a real registry from
//! `peerpull-testbed` and reports its figures against a baseline measured in
//! the same run.

fn main() {
    println!("peerpull-bench: no scenarios yet");
}
