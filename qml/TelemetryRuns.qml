import QtQuick
import QtQuick.Controls
import QtQuick.Layouts
import dev.framelane

// Runs recorded by the daemon: status, steps/s, episodes, shed counters and profile.
Rectangle {
    id: panel

    required property RunsPanel runsPanel
    property string selectedRunId: ""

    signal runChosen(string runId)

    color: "#1c1f23"

    ColumnLayout {
        anchors.fill: parent
        anchors.margins: 8
        spacing: 6

        Label {
            text: "Recorded runs (" + panel.runsPanel.count + ")"
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
            model: panel.runsPanel

            delegate: Rectangle {
                id: row

                required property string runId
                required property string profile
                required property real steps
                required property real episodes
                required property real stepsPerSecond
                required property string status
                required property real shedTotal
                required property string shedText

                width: ListView.view.width
                height: 58
                radius: 4
                color: row.runId === panel.selectedRunId ? "#2d4f7c" : "#23272c"

                Column {
                    anchors.fill: parent
                    anchors.margins: 6
                    spacing: 2

                    Text {
                        text: row.runId + "  · " + row.profile
                        color: "#ffffff"
                        elide: Text.ElideRight
                        width: parent.width
                        font.pixelSize: 13
                    }
                    Text {
                        text: row.steps + " steps · " + row.episodes + " episodes · " + Number(row.stepsPerSecond).toFixed(0) + " steps/s"
                        color: "#8b949e"
                        font.pixelSize: 11
                    }
                    Text {
                        text: row.status + (row.shedTotal > 0 ? " · " + row.shedText : "")
                        color: row.status === "active" ? "#7ee787" : "#8b949e"
                        elide: Text.ElideRight
                        width: parent.width
                        font.pixelSize: 11
                    }
                }

                MouseArea {
                    anchors.fill: parent
                    onClicked: panel.runChosen(row.runId)
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
