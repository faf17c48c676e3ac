import QtQuick
import QtQuick.Controls
import QtQuick.Layouts

// Runs recorded by the daemon: status, steps/s, episodes, shed counters and profile.
Rectangle {
    id: panel

    required property var runsPanel
    property string selectedRunId: ""
    readonly property var runs: {
        try {
            return JSON.parse(panel.runsPanel.runsJson || "[]");
        } catch (e) {
            return [];
        }
    }

    signal runChosen(string runId)

    color: "#1c1f23"

    ColumnLayout {
        anchors.fill: parent
        anchors.margins: 8
        spacing: 6

        Label {
            text: "Recorded runs (" + panel.runs.length + ")"
            color: "#e6edf3"
            font.bold: true
            font.pixelSize: 15
        }

        ListView {
            objectName: "telemetryRunList"
            Layout.fillWidth: true
            Layout.fillHeight: true
            clip: true
            spacing: 4
            model: panel.runs

            delegate: Rectangle {
                id: row

                required property var modelData

                width: ListView.view.width
                height: 58
                radius: 4
                color: modelData.runId === panel.selectedRunId ? "#2d4f7c" : "#23272c"

                Column {
                    anchors.fill: parent
                    anchors.margins: 6
                    spacing: 2

                    Text {
                        text: row.modelData.runId + "  · " + row.modelData.profile
                        color: "#ffffff"
                        elide: Text.ElideRight
                        width: parent.width
                        font.pixelSize: 13
                    }
                    Text {
                        text: row.modelData.steps + " steps · " + row.modelData.episodes + " episodes · " + Number(row.modelData.stepsPerSecond).toFixed(0) + " steps/s"
                        color: "#8b949e"
                        font.pixelSize: 11
                    }
                    Text {
                        text: row.modelData.status + (row.modelData.shedTotal > 0 ? " · shed " + JSON.stringify(row.modelData.shed) : "")
                        color: row.modelData.status === "active" ? "#7ee787" : "#8b949e"
                        elide: Text.ElideRight
                        width: parent.width
                        font.pixelSize: 11
                    }
                }

                MouseArea {
                    anchors.fill: parent
                    onClicked: panel.runChosen(row.modelData.runId)
                }
            }
        }

        Label {
            visible: panel.runsPanel.error !== ""
            text: panel.runsPanel.error
            color: "#f85149"
            wrapMode: Text.Wrap
            Layout.fillWidth: true
        }
    }
}
