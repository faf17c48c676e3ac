import QtQuick
import QtQuick.Controls
import QtQuick.Layouts
import dev.framelane

// Main window: run picker on the left, the live frame with its HUD on the right.
ApplicationWindow {
    id: root

    property string initialRunId: ""
    property int pollIntervalMs: 0

    width: 1280
    height: 760
    visible: true
    title: "framelane"
    color: "#15171a"

    RunCatalog {
        id: catalog
    }

    LiveView {
        id: liveView
        objectName: "liveView"
        runId: root.initialRunId
    }

    RowLayout {
        anchors.fill: parent
        spacing: 0

        RunPicker {
            Layout.preferredWidth: 280
            Layout.fillHeight: true
            catalog: catalog
            selectedRunId: liveView.runId
            onRunChosen: runId => liveView.runId = runId
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
                view: liveView
                pollIntervalMs: root.pollIntervalMs
            }

            HudOverlay {
                objectName: "hudPanel"
                anchors.left: parent.left
                anchors.top: parent.top
                anchors.margins: 16
                view: liveView
            }

            ConnectionBanner {
                anchors.centerIn: parent
                view: liveView
            }
        }
    }
}
