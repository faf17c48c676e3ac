import QtQuick
import QtQuick.Controls
import QtQuick.Layouts
import dev.framelane

// Live fast-lane segments (framelane's and MOSAIC's) with size and age.
Rectangle {
    id: picker

    required property RunCatalog catalog
    property string selectedRunId: ""

    signal runChosen(string runId)

    function humanBytes(bytes) {
        if (bytes >= 1048576)
            return (bytes / 1048576).toFixed(1) + " MiB";
        if (bytes >= 1024)
            return (bytes / 1024).toFixed(0) + " KiB";
        return bytes + " B";
    }

    function humanAge(seconds) {
        if (seconds < 60)
            return Math.floor(seconds) + " s";
        if (seconds < 3600)
            return Math.floor(seconds / 60) + " min";
        return Math.floor(seconds / 3600) + " h";
    }

    color: "#1c1f23"

    ColumnLayout {
        anchors.fill: parent
        anchors.margins: 8
        spacing: 6

        Label {
            text: "Live segments (" + picker.catalog.count + ")"
            color: "#e6edf3"
            font.bold: true
            font.pixelSize: 15
        }

        ListView {
            id: list
            objectName: "runList"
            Layout.fillWidth: true
            Layout.fillHeight: true
            clip: true
            spacing: 4
            model: picker.catalog

            delegate: Rectangle {
                id: row

                required property string runId
                required property string kind
                required property int frameWidth
                required property int frameHeight
                required property string format
                required property real bytes
                required property real ageSeconds
                required property string writerState
                required property real frames

                width: ListView.view.width
                height: 58
                radius: 4
                color: row.runId === picker.selectedRunId ? "#2d4f7c" : (mouse.containsMouse ? "#2a2e33" : "#23272c")

                Column {
                    anchors.fill: parent
                    anchors.margins: 6
                    spacing: 2

                    Text {
                        text: row.runId + (row.kind === "mosaic" ? "  · MOSAIC" : "")
                        color: "#ffffff"
                        elide: Text.ElideRight
                        width: parent.width
                        font.pixelSize: 13
                    }
                    Text {
                        text: (row.frameWidth > 0 ? row.frameWidth + "×" + row.frameHeight + " " + row.format + " · " : "") + picker.humanBytes(row.bytes) + " · " + picker.humanAge(row.ageSeconds)
                        color: "#8b949e"
                        font.pixelSize: 11
                    }
                    Text {
                        text: row.writerState + " · " + row.frames + " frames"
                        color: row.writerState === "live" ? "#7ee787" : "#f0b72f"
                        elide: Text.ElideRight
                        width: parent.width
                        font.pixelSize: 11
                    }
                }

                MouseArea {
                    id: mouse
                    anchors.fill: parent
                    hoverEnabled: true
                    onClicked: picker.runChosen(row.runId)
                }
            }
        }

        Button {
            Layout.fillWidth: true
            text: "Remove stale segments"
            onClicked: picker.catalog.cleanStale()
        }

        Label {
            visible: picker.catalog.error !== ""
            text: picker.catalog.error
            color: "#f85149"
            wrapMode: Text.Wrap
            Layout.fillWidth: true
        }
    }
}
