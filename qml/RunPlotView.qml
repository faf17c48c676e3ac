import QtQuick
import QtQuick.Controls
import QtQuick.Layouts
import dev.framelane

// Live plot of one recorded run: episodic return over episodes, or reward over steps.
Rectangle {
    id: view

    required property RunPlot runPlot

    color: "#111316"

    ColumnLayout {
        anchors.fill: parent
        anchors.margins: 6
        spacing: 4

        RowLayout {
            Layout.fillWidth: true

            Label {
                text: view.runPlot.runId === "" ? "Pick a recorded run to plot it" : view.runPlot.runId
                color: "#e6edf3"
                font.bold: true
            }
            Item {
                Layout.fillWidth: true
            }
            Label {
                objectName: "plotSummary"
                text: view.runPlot.pointCount + " points · last " + Number(view.runPlot.lastValue).toFixed(3)
                color: "#8b949e"
            }
            ComboBox {
                model: ["returns", "rewards"]
                onActivated: view.runPlot.series = currentText
            }
        }

        Item {
            Layout.fillWidth: true
            Layout.fillHeight: true

            PlotItem {
                id: plotItem
                objectName: "plotItem"
                anchors.fill: parent
                anchors.leftMargin: 56
                source: view.runPlot
            }
            Text {
                anchors.left: parent.left
                anchors.top: parent.top
                text: Number(plotItem.maxY).toFixed(2)
                color: "#8b949e"
                font.pixelSize: 11
            }
            Text {
                anchors.left: parent.left
                anchors.bottom: parent.bottom
                text: Number(plotItem.minY).toFixed(2)
                color: "#8b949e"
                font.pixelSize: 11
            }
            Label {
                anchors.centerIn: parent
                visible: view.runPlot.error !== ""
                text: view.runPlot.error
                color: "#f85149"
            }
        }
    }
}
