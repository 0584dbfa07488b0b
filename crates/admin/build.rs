//! Compiles `proto/peerpull/admin/v1/admin.proto` with tonic.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "../../proto/peerpull/admin/v1/admin.proto";
    println!("cargo:rerun-if-changed={proto}");
    tonic_prost_build::configure()
        // `peerpull status --output json` prints the messages as they are.
        .type_attribute(".peerpull.admin.v1", "#[derive(serde::Serialize)]")
        .compile_protos(&[proto], &["../../proto"])?;
    Ok(())
}
