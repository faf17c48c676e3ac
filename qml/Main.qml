import QtQuick
import QtQuick.Controls
import QtQuick.Layouts
import dev.framelane

// Main window: run picker on the left, the live frame with its HUD on the right.
ApplicationWindow {
    id: root

    property string initialRunId: ""
    property int pollIntervalMs: 0
    // Live view frame-rate cap (0: off).
    property int maxFps: 0
    // Off: the live view shows the daemon's kept frames even when the run has a segment.
    property bool preferSharedMemory: true
    // A producer rate to ask for when the window opens (-1: none).
    property int initialAskRate: -1
    // Ask the producer to slow down after sustained skipping.
    property bool autoSlow: false
    property bool showMetrics: false
    // Address of the telemetry daemon (embedded or --connect); empty: none.
    property string daemonAddress: ""
    property string initialPlotRunId: ""
    // Store directory for replay (empty: replay unavailable).
    property string dataDir: ""
    property string initialReplayRunId: ""
    property string initialReplayWorker: ""
    property string initialReplayAgent: ""
    // rig.yaml of a recording rig to run as a full-window kiosk (empty: the normal window).
    property string rigConfig: ""
    // Output folder of `framelane analyze` opened in the Replay tab (empty: none).
    property string initialAnalysis: ""
    // A rig clip (its id) opened in the Replay tab once the store lists it, and played.
    property string initialClip: ""
    property bool playInitialClip: false
    readonly property bool replaying: modeBar.currentIndex === 1
    // The Replay tab shows an episode analysis instead of a recorded run.
    readonly property bool analysing: replaying && analysisView.folder !== ""
    // The Replay tab shows a rig clip's camera file.
    readonly property bool showingClip: replaying && !analysing && clipPlayer.file !== ""

    width: 1280
    height: 760
    visible: true
    title: "framelane"
    color: "#15171a"

    RunCatalog {
        id: catalog
        objectName: "runCatalog"
    }

    RunsPanel {
        id: runsPanel
        address: root.daemonAddress
    }

    RunPlot {
        id: runPlot
        objectName: "runPlot"
        address: root.daemonAddress
        runId: root.initialPlotRunId
    }

    ReplayView {
        id: replayView
        objectName: "replayView"
        dataDir: root.dataDir
        runId: root.initialReplayRunId
        workerId: root.initialReplayWorker
        agentId: root.initialReplayAgent
    }

    ClipCatalog {
        id: clipCatalog
        objectName: "clipCatalog"
        dataDir: root.dataDir
        // The clip given on the command line, once listed.
        onCountChanged: {
            if (root.initialClip === "" || clipPlayer.file !== "")
                return
            const row = indexOf(root.initialClip)
            if (row >= 0) {
                clipPlayer.file = cameraFile(row, 0)
                clipPlayer.playing = root.playInitialClip
            }
        }
    }

    ClipPlayer {
        id: clipPlayer
        objectName: "clipPlayer"
    }

    // Rigs list clips while the window is open.
    Timer {
        interval: 3000
        repeat: true
        running: root.dataDir !== "" && (root.replaying || root.initialClip !== "")
        triggeredOnStart: true
        onTriggered: clipCatalog.refresh()
    }

    AnalysisView {
        id: analysisView
        objectName: "analysisView"
        folder: root.initialAnalysis
    }

    LiveView {
        id: liveView
        objectName: "liveView"
        daemonAddress: root.daemonAddress
        runId: root.initialRunId
        preferSharedMemory: root.preferSharedMemory
        autoSlow: root.autoSlow
    }

    // The producer rate given on the command line is asked for once the demo run's worker
    // listens on its control stream (asked again every second until one does).
    Timer {
        interval: 1000
        repeat: true
        running: root.initialAskRate >= 0 && liveView.rateListeners === 0 && root.daemonAddress !== ""
        triggeredOnStart: true
        onTriggered: liveView.askMaxRate(root.initialAskRate)
    }

    RigKiosk {
        objectName: "rigKiosk"
        anchors.fill: parent
        z: 10
        visible: root.rigConfig !== ""
        config: root.rigConfig
    }

    RowLayout {
        anchors.fill: parent
        spacing: 0
        visible: root.rigConfig === ""

        ColumnLayout {
            Layout.preferredWidth: 280
            Layout.maximumWidth: 280
            Layout.fillWidth: false
            Layout.fillHeight: true
            spacing: 0

            RunPicker {
                Layout.fillWidth: true
                Layout.fillHeight: true
                catalog: catalog
                selectedRunId: liveView.runId
                onRunChosen: runId => liveView.runId = runId
            }

            TelemetryRuns {
                Layout.fillWidth: true
                Layout.fillHeight: true
                visible: root.daemonAddress !== ""
                runsPanel: runsPanel
                selectedRunId: root.replaying ? replayView.runId : runPlot.runId
                onRunChosen: runId => {
                    if (root.replaying) {
                        clipPlayer.file = ""
                        replayView.runId = runId
                    } else {
                        runPlot.runId = runId
                    }
                }
            }

            ClipsPanel {
                Layout.fillWidth: true
                Layout.fillHeight: true
                visible: root.replaying && clipCatalog.count > 0
                catalog: clipCatalog
                shownFile: clipPlayer.file
                onFileChosen: path => {
                    analysisView.folder = ""
                    clipPlayer.file = path
                }
            }
        }

        ColumnLayout {
            Layout.fillWidth: true
            Layout.fillHeight: true
            spacing: 0

        RowLayout {
            Layout.fillWidth: true
            spacing: 8

            TabBar {
                id: modeBar
                objectName: "modeBar"
                Layout.fillWidth: true
                // --replay-run and --analysis open the Replay tab; the demo run is replayable but
                // opens live.
                currentIndex: root.initialAnalysis !== "" || root.initialClip !== ""
                              || (root.initialReplayRunId !== "" && root.initialReplayRunId !== root.initialRunId) ? 1 : 0
                TabButton { text: "Live" }
                TabButton {
                    // Recorded runs need the store; an analysis needs only its folder.
                    text: "Replay"
                }
            }

            Label {
                visible: !root.replaying
                text: "FPS cap"
                color: "#8b949e"
            }
            ComboBox {
                id: fpsCap
                objectName: "fpsCap"
                visible: !root.replaying
                // The usual caps, and the one given on the command line if it is another.
                readonly property var caps: {
                    const usual = [0, 15, 30, 60];
                    return usual.indexOf(root.maxFps) < 0 ? usual.concat([root.maxFps]) : usual;
                }
                model: caps.map(cap => cap === 0 ? "off" : String(cap))
                currentIndex: Math.max(0, caps.indexOf(root.maxFps))
                onActivated: index => root.maxFps = caps[index]
            }
            CheckBox {
                objectName: "preferSharedMemory"
                visible: !root.replaying
                text: "Shared memory"
                checked: root.preferSharedMemory
                onToggled: root.preferSharedMemory = checked
                ToolTip.visible: hovered
                ToolTip.text: "Off: show the daemon's kept frames even when the run has a fast-lane segment"
            }
            Label {
                visible: !root.replaying && root.daemonAddress !== ""
                text: "Producer rate"
                color: "#8b949e"
            }
            ComboBox {
                objectName: "producerRate"
                visible: !root.replaying && root.daemonAddress !== ""
                readonly property var rates: [0, 10, 30, 60]
                model: rates.map(hz => hz === 0 ? "no cap" : hz + "/s")
                onActivated: index => liveView.askMaxRate(rates[index])
            }
            CheckBox {
                objectName: "autoSlow"
                visible: !root.replaying && root.daemonAddress !== ""
                text: "Slow when skipping"
                checked: root.autoSlow
                onToggled: root.autoSlow = checked
                ToolTip.visible: hovered
                ToolTip.text: "After 3 s of skipped frames, ask the producer for the display's rate"
            }
            Button {
                objectName: "showMetricsButton"
                text: "Metrics"
                checkable: true
                checked: root.showMetrics
                onToggled: root.showMetrics = checked
            }
        }

        Rectangle {
            Layout.fillWidth: true
            Layout.fillHeight: true
            color: "#0b0c0e"

            FrameItem {
                id: frameItem
                objectName: "frameItem"
                anchors.fill: parent
                anchors.margins: 8
                source: root.analysing ? analysisView : root.showingClip ? clipPlayer
                        : root.replaying ? replayView : liveView
                pollIntervalMs: root.pollIntervalMs
                maxFps: root.maxFps
            }

            // Live-only overlays; replay shows its step, reward and frame origin below.
            Item {
                anchors.fill: parent
                visible: !root.replaying

                HudOverlay {
                    objectName: "hudPanel"
                    anchors.left: parent.left
                    anchors.top: parent.top
                    anchors.margins: 16
                    view: liveView
                    maxFps: frameItem.maxFps
                }

                ConnectionBanner {
                    anchors.centerIn: parent
                    view: liveView
                }
            }

            MetricsPanel {
                objectName: "metricsPanel"
                anchors.right: parent.right
                anchors.top: parent.top
                anchors.margins: 16
                visible: root.showMetrics
                view: liveView
                daemonAddress: root.daemonAddress
            }

            Label {
                objectName: "replayPlaceholder"
                anchors.centerIn: parent
                visible: root.replaying && !root.analysing && !root.showingClip && replayView.runId === ""
                text: root.dataDir === "" ? "No recorded runs here (no data directory).\nOpen an analysis folder below."
                      : "Nothing to replay yet.\nPick a recorded run in the list on the left,\nor open an analysis folder below."
                horizontalAlignment: Text.AlignHCenter
                color: "#8b949e"
                font.pixelSize: 18
            }
        }

        RunPlotView {
            Layout.fillWidth: true
            Layout.preferredHeight: 200
            visible: root.daemonAddress !== "" && !root.replaying
            runPlot: runPlot
        }

        AnalysisPanel {
            Layout.fillWidth: true
            Layout.preferredHeight: root.analysing ? 150 : 44
            visible: root.replaying
            analysis: analysisView
        }

        ReplayPanel {
            Layout.fillWidth: true
            Layout.preferredHeight: 260
            visible: root.replaying && !root.analysing && !root.showingClip
            replay: replayView
        }

        // A rig clip's camera file: play it, and what is shown.
        Rectangle {
            Layout.fillWidth: true
            Layout.preferredHeight: 48
            visible: root.showingClip
            color: "#111316"
            RowLayout {
                anchors.fill: parent
                anchors.margins: 6
                spacing: 8
                Button {
                    objectName: "clipPlay"
                    text: clipPlayer.playing ? "Stop" : "Play"
                    onClicked: clipPlayer.playing = !clipPlayer.playing
                }
                Label {
                    objectName: "clipStatus"
                    Layout.fillWidth: true
                    text: clipPlayer.note !== "" ? clipPlayer.note
                          : clipPlayer.file + " · frame " + clipPlayer.position
                    color: clipPlayer.note !== "" ? "#d29922" : "#e6edf3"
                    elide: Text.ElideLeft
                }
                Button {
                    text: "Close"
                    onClicked: clipPlayer.file = ""
                }
            }
        }
        }
    }
}
