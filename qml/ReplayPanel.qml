import QtQuick
import QtQuick.Controls
import QtQuick.Layouts
import dev.framelane

// Replay of a recorded run: episode list, the episode's reward plot with a cursor at the shown
// step (click to seek), the whole run's overview, and a scrubber with play/pause/step/speed.
Rectangle {
    id: panel

    required property ReplayView replay
    property bool playing: false
    property real speed: 1.0

    color: "#111316"

    ReplayEpisodes {
        id: episodes
        objectName: "replayEpisodeList"
        dataDir: panel.replay.dataDir
        runId: panel.replay.runId
        workerId: panel.replay.workerId
        agentId: panel.replay.agentId
    }

    ReplayPlot {
        id: series
        objectName: "replaySeries"
        dataDir: panel.replay.dataDir
        runId: panel.replay.runId
        workerId: panel.replay.workerId
        agentId: panel.replay.agentId
        episode: panel.replay.episode
    }

    // A run that is still recording grows: reload its episodes and the shown episode while the
    // tab is open, and until a first frame could be shown. The plots (whose overview query grows
    // with the run) reload only when something grew.
    Timer {
        interval: 3000
        repeat: true
        running: panel.replay.runId !== "" && (panel.visible || panel.replay.frameOrigin === "")
        onTriggered: {
            panel.replay.refresh()
            episodes.refresh()
        }
    }
    Connections {
        target: panel.replay
        function onStepCountChanged() { series.refresh() }
    }
    Connections {
        target: episodes
        function onCountChanged() { series.refresh() }
    }

    Timer {
        id: player
        interval: Math.max(5, 1000 / (30 * panel.speed))
        repeat: true
        running: panel.playing && panel.visible
        onTriggered: {
            if (!panel.replay.stepBy(1))
                panel.playing = false
        }
    }

    RowLayout {
        anchors.fill: parent
        anchors.margins: 6
        spacing: 8

        ColumnLayout {
            Layout.preferredWidth: 210
            Layout.fillHeight: true
            spacing: 4

            // Workers of one run may number their episodes alike: one worker's at a time.
            ComboBox {
                id: workerPicker
                objectName: "replayWorkers"
                Layout.fillWidth: true
                visible: panel.replay.workers.length > 1
                model: panel.replay.workers
                currentIndex: panel.replay.workers.indexOf(panel.replay.workerId)
                displayText: "worker " + (currentText === "" ? "(none)" : currentText)
                font.pixelSize: 12
                onActivated: index => panel.replay.workerId = panel.replay.workers[index]
            }

            // The agents of a multi-agent run keep their own steps and frames: one at a time.
            ComboBox {
                id: agentPicker
                objectName: "replayAgents"
                Layout.fillWidth: true
                visible: panel.replay.agents.length > 1
                model: panel.replay.agents
                currentIndex: panel.replay.agents.indexOf(panel.replay.agentId)
                displayText: "agent " + (currentText === "" ? "(none)" : currentText)
                font.pixelSize: 12
                onActivated: index => panel.replay.agentId = panel.replay.agents[index]
            }

            ListView {
                id: episodeList
                objectName: "replayEpisodes"
                Layout.fillWidth: true
                Layout.fillHeight: true
                clip: true
                model: episodes
                // Re-evaluated when the list reloads (count) or another episode is shown.
                currentIndex: episodes.count >= 0 ? episodes.rowOf(panel.replay.episode) : -1
                header: Label {
                    text: episodes.loading ? "loading..." : episodes.count + " episodes"
                    color: "#8b949e"
                    bottomPadding: 4
                }
                delegate: ItemDelegate {
                    required property real episode
                    required property real steps
                    required property real totalReward
                    required property bool finished
                    width: ListView.view.width
                    height: 24
                    highlighted: ListView.isCurrentItem
                    text: "ep " + episode + " · " + steps + " steps · "
                          + Number(totalReward).toFixed(2) + (finished ? "" : " (running)")
                    font.pixelSize: 12
                    onClicked: panel.replay.chooseEpisode(episode)
                }
            }
        }

        ColumnLayout {
            Layout.fillWidth: true
            Layout.fillHeight: true
            spacing: 4

            RowLayout {
                Layout.fillWidth: true
                Label {
                    objectName: "replayStatus"
                    text: panel.replay.runId === "" ? "Pick a recorded run to replay it"
                          : panel.replay.runId + " · episode " + panel.replay.episode + " · step "
                            + panel.replay.step + " · reward " + Number(panel.replay.reward).toFixed(3)
                    color: "#e6edf3"
                    font.bold: true
                }
                Item { Layout.fillWidth: true }
                Label {
                    text: panel.replay.frameOrigin !== "" ? "frame from " + panel.replay.frameOrigin
                          : panel.replay.note
                    color: panel.replay.frameOrigin !== "" ? "#8b949e" : "#d29922"
                    elide: Text.ElideRight
                    Layout.maximumWidth: 420
                }
            }

            Item {
                Layout.fillWidth: true
                Layout.fillHeight: true

                PlotItem {
                    id: episodePlot
                    objectName: "replayPlot"
                    anchors.fill: parent
                    source: series
                    channel: 0
                    color: "#58a6ff"
                }
                Rectangle {
                    // The shown step.
                    visible: panel.replay.stepCount > 1
                    width: 2
                    height: parent.height
                    color: "#f0883e"
                    x: panel.replay.stepCount > 1
                       ? panel.replay.position / (panel.replay.stepCount - 1) * (parent.width - 2) : 0
                }
                MouseArea {
                    anchors.fill: parent
                    onPressed: mouse => panel.seekTo(mouse.x / width)
                    onPositionChanged: mouse => { if (pressed) panel.seekTo(mouse.x / width) }
                }
            }

            PlotItem {
                objectName: "replayOverview"
                Layout.fillWidth: true
                Layout.preferredHeight: 36
                source: series
                channel: 1
                color: "#3fb950"
            }

            RowLayout {
                Layout.fillWidth: true
                Button {
                    text: "\u25C0"
                    onClicked: panel.replay.stepBy(-1)
                }
                Button {
                    objectName: "replayPlay"
                    text: panel.playing ? "Pause" : "Play"
                    onClicked: panel.playing = !panel.playing
                }
                Button {
                    text: "\u25B6"
                    onClicked: panel.replay.stepBy(1)
                }
                Slider {
                    id: scrubber
                    objectName: "replayScrubber"
                    Layout.fillWidth: true
                    from: 0
                    to: Math.max(0, panel.replay.stepCount - 1)
                    stepSize: 1
                    value: panel.replay.position
                    onMoved: panel.replay.seek(Math.round(value))
                }
                ComboBox {
                    model: ["0.25x", "0.5x", "1x", "2x", "4x", "8x"]
                    currentIndex: 2
                    onActivated: panel.speed = parseFloat(currentText)
                }
                Button {
                    text: "Reload"
                    onClicked: {
                        panel.replay.refresh()
                        episodes.refresh()
                        series.refresh()
                    }
                }
            }
        }
    }

    function seekTo(fraction) {
        replay.seek(Math.round(Math.max(0, Math.min(1, fraction)) * (replay.stepCount - 1)))
    }
}
