import QtQuick
import QtQuick.Controls
import QtQuick.Layouts
import dev.framelane

// Clips of recording rigs that the store lists, newest first; choosing a camera of a clip
// opens its MP4 in the Replay tab.
Rectangle {
    id: panel

    required property ClipCatalog catalog
    // The file shown now (highlights its row).
    property string shownFile: ""

    signal fileChosen(string path)

    color: "#1c1f23"

    ColumnLayout {
        anchors.fill: parent
        anchors.margins: 8
        spacing: 6

        Label {
            text: "Rig clips (" + panel.catalog.count + ")"
            color: "#e6edf3"
            font.bold: true
            font.pixelSize: 15
        }
        Label {
            visible: panel.catalog.note !== ""
            text: panel.catalog.note
            color: "#d29922"
            wrapMode: Text.Wrap
            Layout.fillWidth: true
        }

        ListView {
            objectName: "clipList"
            Layout.fillWidth: true
            Layout.fillHeight: true
            clip: true
            spacing: 4
            model: panel.catalog.count

            delegate: Rectangle {
                id: row
                required property int index
                width: ListView.view.width
                height: 30 + 26 * Math.ceil(panel.catalog.cameraCount(index) / 3)
                radius: 4
                color: "#23272c"

                Column {
                    anchors.fill: parent
                    anchors.margins: 6
                    spacing: 4
                    Text {
                        width: parent.width
                        text: panel.catalog.clipLine(row.index)
                        color: "#e6edf3"
                        font.pixelSize: 11
                        elide: Text.ElideRight
                    }
                    Flow {
                        width: parent.width
                        spacing: 4
                        Repeater {
                            model: panel.catalog.cameraCount(row.index)
                            Button {
                                required property int index
                                readonly property string path: panel.catalog.cameraFile(row.index, index)
                                text: panel.catalog.cameraName(row.index, index)
                                font.pixelSize: 11
                                implicitHeight: 22
                                highlighted: path === panel.shownFile
                                onClicked: panel.fileChosen(path)
                            }
                        }
                    }
                }
            }
        }
    }
}
