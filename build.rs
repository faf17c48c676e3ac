//! Builds the cxx-qt bridges of src/ui, the C++ scene-graph item and application shell in cpp/,
//! the QML module `dev.framelane` from qml/, and the gRPC code from proto/.

use cxx_qt_build::{CxxQtBuilder, QmlModule};

fn main() {
    let qml = QmlModule::new("dev.framelane").qml_files([
        "qml/Main.qml",
        "qml/RunPicker.qml",
        "qml/HudOverlay.qml",
        "qml/ConnectionBanner.qml",
        "qml/TelemetryRuns.qml",
        "qml/RunPlotView.qml",
        "qml/ReplayPanel.qml",
    ]);
    let builder = CxxQtBuilder::new_qml_module(qml)
        .qt_module("Gui")
        .qt_module("Quick")
        // Only cpp/ is watched and exported as headers: watching the whole crate (the default)
        // would re-run this script on every build because target/ changes.
        .crate_include_root(Some("cpp".into()))
        .files([
            "src/ui/app.rs",
            "src/ui/live_view.rs",
            "src/ui/run_catalog.rs",
            "src/ui/runs_panel.rs",
            "src/ui/run_plot.rs",
            "src/ui/replay_view.rs",
        ])
        .cpp_files([
            "cpp/frame_item.h",
            "cpp/frame_item.cpp",
            "cpp/plot_item.h",
            "cpp/plot_item.cpp",
            "cpp/app.cpp",
        ]);
    builder.build();

    // cxx-qt narrows what re-runs this script; the protos must be listed too.
    println!("cargo::rerun-if-changed=proto");
    tonic_prost_build::configure()
        .compile_protos(
            &["proto/framelane/v1/telemetry.proto", "proto/gymgui/trainer.proto"],
            &["proto"],
        )
        .unwrap_or_else(|err| panic!("compiling proto/ failed (is protoc installed? scripts/setup-debian.sh installs it): {err}"));
}
