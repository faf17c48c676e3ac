import QtQuick
import QtQuick.Controls
import QtQuick.Layouts
import dev.framelane

// An episode analysis (the output folder of `framelane analyze`): the frame with its faces'
// boxes and track ids, a timeline of the analysed frames with the scene cuts marked, and jumps
// to the next cut or the next appearance of a track.
Rectangle {
    id: panel

    required property AnalysisView analysis
    property bool playing: false

    color: "#111316"
    clip: true

    Timer {
        interval: 100
        repeat: true
        running: panel.playing && panel.visible
        onTriggered: {
            if (!panel.analysis.stepBy(1))
                panel.playing = false
        }
    }

    ColumnLayout {
        anchors.fill: parent
        anchors.margins: 6
        spacing: 6

        RowLayout {
            Layout.fillWidth: true
            spacing: 8
            Label {
                text: "Analysis"
                color: "#8b949e"
            }
            TextField {
                id: folderField
                objectName: "analysisFolder"
                Layout.fillWidth: true
                placeholderText: "output folder of framelane analyze"
                text: panel.analysis.folder
                onAccepted: panel.analysis.folder = text
            }
            Button {
                text: "Open"
                onClicked: panel.analysis.folder = folderField.text
            }
            Button {
                text: "Close"
                enabled: panel.analysis.folder !== ""
                onClicked: panel.analysis.folder = ""
            }
        }

        Label {
            objectName: "analysisStatus"
            Layout.fillWidth: true
            text: panel.analysis.note !== "" ? panel.analysis.note
                  : panel.analysis.loading ? "loading..."
                  : panel.analysis.epId + " · frame " + panel.analysis.frame + " · "
                    + Number(panel.analysis.time).toFixed(2) + " s · " + panel.analysis.reason
                    + " · " + panel.analysis.faces + " faces · " + panel.analysis.cutCount + " cuts · "
                    + panel.analysis.trackCount + " tracks"
            color: panel.analysis.note !== "" ? "#d29922" : "#e6edf3"
            font.bold: true
            elide: Text.ElideRight
        }

        // Timeline: the shown analysed frame, scene cuts as marks (click to seek).
        Item {
            objectName: "analysisTimeline"
            Layout.fillWidth: true
            Layout.preferredHeight: 28

            Rectangle {
                anchors.verticalCenter: parent.verticalCenter
                width: parent.width
                height: 4
                color: "#30363d"
            }
            Repeater {
                model: panel.analysis.cutCount
                Rectangle {
                    required property int index
                    width: 2
                    height: parent.height
                    color: "#f0883e"
                    x: Math.max(0, panel.analysis.cutFraction(index)) * (parent.width - 2)
                }
            }
            Rectangle {
                width: 8
                height: 8
                radius: 4
                color: "#58a6ff"
                anchors.verticalCenter: parent.verticalCenter
                x: panel.analysis.count > 1
                   ? panel.analysis.position / (panel.analysis.count - 1) * (parent.width - 8) : 0
            }
            MouseArea {
                anchors.fill: parent
                onPressed: mouse => panel.analysis.seek(Math.round(mouse.x / width * (panel.analysis.count - 1)))
            }
        }

        RowLayout {
            Layout.fillWidth: true
            Button {
                text: "\u25C0"
                onClicked: panel.analysis.stepBy(-1)
            }
            Button {
                text: panel.playing ? "Pause" : "Play"
                onClicked: panel.playing = !panel.playing
            }
            Button {
                text: "\u25B6"
                onClicked: panel.analysis.stepBy(1)
            }
            Button {
                objectName: "analysisNextCut"
                text: "Next cut"
                enabled: panel.analysis.cutCount > 0
                onClicked: panel.analysis.nextCut()
            }
            Label {
                text: "track"
                color: "#8b949e"
            }
            SpinBox {
                id: trackBox
                objectName: "analysisTrack"
                from: 1
                to: Math.max(1, panel.analysis.trackCount)
                enabled: panel.analysis.trackCount > 0
            }
            Button {
                objectName: "analysisNextAppearance"
                text: "Next appearance"
                enabled: panel.analysis.trackCount > 0
                onClicked: panel.analysis.nextAppearance(trackBox.value)
            }
            Item { Layout.fillWidth: true }
        }
    }
}
