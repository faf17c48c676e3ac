import QtQuick

// Centered message while there is no live frame to look at.
Rectangle {
    id: banner

    required property var view

    visible: view.connectionState !== "live" && view.frameWidth === 0
    width: label.implicitWidth + 32
    height: label.implicitHeight + 20
    radius: 8
    color: "#d0202328"

    Text {
        id: label
        anchors.centerIn: parent
        color: "#e6edf3"
        font.pixelSize: 15
        horizontalAlignment: Text.AlignHCenter
        text: banner.view.runId === ""
              ? "Pick a run on the left, or start one with\nframelane demo --run my-run"
              : banner.view.connectionState + (banner.view.stateReason ? "\n" + banner.view.stateReason : "")
    }
}
