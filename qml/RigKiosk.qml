import QtQuick
import QtQuick.Controls
import QtQuick.Layouts
import dev.framelane

// Full-screen kiosk of a recording rig: a live preview per camera with its state, a big
// trigger button (and the space bar or T), disk space and hours left, the newest clips, and
// errors large enough to read across a room. Leaving takes a deliberate action: hold the exit
// button for two seconds.
Rectangle {
    id: kiosk

    property string config: ""
    // The preview items by camera (for the window's statistics: where each preview is painted).
    property var previewItems: []
    // The clip thumbnails' items and players by row (for the window's statistics).
    property var thumbItems: []
    property var thumbPlayers: []
    // The per-camera line labels by camera (for the window's statistics).
    property var lineItems: []
    color: "#0b0c0e"
    focus: visible

    RigControl {
        id: rig
        objectName: "rigControl"
        config: kiosk.config
    }

    Timer {
        interval: 250
        repeat: true
        running: kiosk.visible
        onTriggered: rig.refresh()
    }

    Keys.onPressed: event => {
        if (event.key === Qt.Key_Space || event.key === Qt.Key_T) {
            rig.trigger()
            event.accepted = true
        }
    }

    RowLayout {
        anchors.fill: parent
        anchors.margins: 16
        spacing: 16

        GridLayout {
            Layout.fillWidth: true
            Layout.fillHeight: true
            columns: rig.cameraCount > 2 ? 2 : rig.cameraCount
            columnSpacing: 12
            rowSpacing: 12

            Repeater {
                model: rig.cameraCount
                Rectangle {
                    required property int index
                    Layout.fillWidth: true
                    Layout.fillHeight: true
                    Layout.preferredWidth: 480
                    Layout.preferredHeight: 360
                    color: "#15171a"
                    border.width: 3
                    border.color: rig.looks >= 0 && rig.cameraState(index) === "live" ? "#238636" : "#da3633"

                    RigCameraView {
                        id: preview
                        camera: index
                    }
                    Timer {
                        interval: 33
                        repeat: true
                        running: kiosk.visible
                        onTriggered: preview.poll()
                    }
                    FrameItem {
                        id: previewItem
                        objectName: "rigPreview" + index
                        anchors.fill: parent
                        anchors.margins: 6
                        source: preview
                        Component.onCompleted: {
                            const items = kiosk.previewItems.slice()
                            items[index] = previewItem
                            kiosk.previewItems = items
                        }
                    }
                    Column {
                        anchors.left: parent.left
                        anchors.top: parent.top
                        anchors.margins: 12
                        Label {
                            objectName: "rigCameraName" + index
                            text: rig.looks >= 0 ? rig.cameraName(index) + " · " + rig.cameraState(index) : ""
                            color: "white"
                            font.pixelSize: 28
                            font.bold: true
                            style: Text.Outline
                            styleColor: "black"
                        }
                        Label {
                            id: cameraLineLabel
                            text: rig.looks >= 0 ? rig.cameraLine(index) : ""
                            Component.onCompleted: {
                                const items = kiosk.lineItems.slice()
                                items[index] = cameraLineLabel
                                kiosk.lineItems = items
                            }
                            color: "#e6edf3"
                            font.pixelSize: 18
                            style: Text.Outline
                            styleColor: "black"
                        }
                    }
                }
            }
        }

        ColumnLayout {
            Layout.fillWidth: false
            Layout.preferredWidth: 380
            Layout.maximumWidth: 380
            Layout.fillHeight: true
            spacing: 14

            Button {
                objectName: "rigTrigger"
                Layout.fillWidth: true
                Layout.preferredHeight: 180
                text: "TRIGGER\n(space)"
                font.pixelSize: 40
                font.bold: true
                palette.button: "#da3633"
                palette.buttonText: "white"
                onClicked: rig.trigger()
            }

            Label {
                objectName: "rigDisk"
                Layout.fillWidth: true
                Layout.maximumWidth: 380
                text: "disk " + (rig.diskFreeMb / 1024).toFixed(1) + " GB free · "
                      + (rig.hoursLeft < 0 ? "hours left: after the first clip" : rig.hoursLeft.toFixed(1) + " h left")
                color: "#e6edf3"
                font.pixelSize: 20
                wrapMode: Text.Wrap
            }

            Label {
                objectName: "rigClips"
                text: rig.clips + " clips · " + rig.triggers + " triggers"
                color: "#8b949e"
                font.pixelSize: 20
            }

            // The newest clips: a thumbnail (the first camera's first frame) that plays the
            // clip when touched, and its cameras and frame counts. A positioner, not the
            // layout, places the rows: they come and go with the clips.
            Column {
                Layout.fillWidth: true
                Layout.maximumWidth: 380
                spacing: 8

                Repeater {
                    model: Math.min(rig.clips, 4)
                    Row {
                        id: clipRow
                        required property int index
                        width: 380
                        spacing: 8

                        ClipPlayer {
                            id: thumbPlayer
                            // Re-read when a new clip shifts the list (clips changes).
                            file: rig.clips >= 0 ? rig.clipFile(clipRow.index) : ""
                        }
                        Rectangle {
                            width: 128
                            height: 72
                            color: "#15171a"
                            border.width: 2
                            border.color: thumbPlayer.playing ? "#3fb950" : "#30363d"
                            FrameItem {
                                id: thumbItem
                                objectName: "rigClipThumb" + clipRow.index
                                anchors.fill: parent
                                anchors.margins: 2
                                source: thumbPlayer
                                Component.onCompleted: {
                                    const items = kiosk.thumbItems.slice()
                                    items[clipRow.index] = thumbItem
                                    kiosk.thumbItems = items
                                    const players = kiosk.thumbPlayers.slice()
                                    players[clipRow.index] = thumbPlayer
                                    kiosk.thumbPlayers = players
                                }
                            }
                            Label {
                                anchors.centerIn: parent
                                visible: !thumbPlayer.playing && thumbPlayer.shown > 0
                                text: "\u25B6"
                                color: "white"
                                font.pixelSize: 28
                                style: Text.Outline
                                styleColor: "black"
                            }
                            MouseArea {
                                anchors.fill: parent
                                onClicked: thumbPlayer.playing = !thumbPlayer.playing
                            }
                        }
                        Label {
                            width: 380 - 128 - 8
                            text: rig.clips >= 0 ? rig.clipLine(clipRow.index) : ""
                            color: clipRow.index === 0 ? "#3fb950" : "#8b949e"
                            font.pixelSize: 16
                            wrapMode: Text.Wrap
                            maximumLineCount: 3
                            elide: Text.ElideRight
                        }
                    }
                }
            }

            Label {
                objectName: "rigError"
                Layout.fillWidth: true
                Layout.maximumWidth: 380
                visible: rig.error !== ""
                text: rig.error
                color: "#ff7b72"
                font.pixelSize: 26
                font.bold: true
                wrapMode: Text.Wrap
            }

            Item { Layout.fillHeight: true }

            // Leaving the kiosk: hold for two seconds.
            Button {
                id: exitButton
                Layout.fillWidth: true
                text: pressed ? "keep holding to leave..." : "hold to leave the kiosk"
                font.pixelSize: 14
                Timer {
                    interval: 2000
                    running: exitButton.pressed
                    onTriggered: Qt.quit()
                }
            }
        }
    }
}
