//! Generates the gRPC code of the workspace's proto/ folder (framelane.v1: telemetry and the
//! recording rig's API; MOSAIC's trainer API) for the ingest part and the rig.

fn main() {
    println!("cargo::rerun-if-changed=../../proto");
    tonic_prost_build::configure()
        .compile_protos(
            &[
                "../../proto/framelane/v1/telemetry.proto",
                "../../proto/framelane/v1/rig.proto",
                "../../proto/gymgui/trainer.proto",
            ],
            &["../../proto"],
        )
        .unwrap_or_else(|err| {
            panic!("compiling proto/ failed (is protoc installed? scripts/setup-debian.sh installs it): {err}")
        });
}
