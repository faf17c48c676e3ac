import QtQuick
import QtQuick.Layouts

// HUD of the frame on screen: every value comes from the slot the frame was read from.
Rectangle {
    id: hud

    required property var view
    // The live view's frame-rate cap in force (0: none).
    property int maxFps: 0

    function fixed(value, digits) {
        return Number(value).toFixed(digits);
    }

    width: column.implicitWidth + 20
    height: column.implicitHeight + 16
    radius: 6
    color: "#b0101214"
    border.color: "#40ffffff"

    ColumnLayout {
        id: column
        anchors.centerIn: parent
        spacing: 2

        Text {
            objectName: "hudRun"
            text: "run " + (hud.view.runId || "—") + (hud.view.segmentKind === "mosaic" ? "  (MOSAIC)" : "")
            color: "#ffffff"
            font.bold: true
            font.pixelSize: 14
        }
        Text {
            objectName: "hudState"
            text: hud.view.connectionState + (hud.view.stateReason ? ": " + hud.view.stateReason : "")
            color: hud.view.connectionState === "live" ? "#7ee787" : "#f0b72f"
            font.pixelSize: 12
        }
        Text {
            objectName: "hudEpisode"
            text: "episode " + hud.view.episode
            color: "#e6edf3"
            font.pixelSize: 12
        }
        Text {
            objectName: "hudStep"
            text: "step " + hud.view.step
            color: "#e6edf3"
            font.pixelSize: 12
        }
        Text {
            objectName: "hudReward"
            text: "reward " + hud.fixed(hud.view.reward, 3) + "   return " + hud.fixed(hud.view.episodicReturn, 2)
            color: "#e6edf3"
            font.pixelSize: 12
        }
        Text {
            objectName: "hudRates"
            text: "producer " + hud.fixed(hud.view.producerRate, 1) + " steps/s   display " + hud.fixed(hud.view.displayFps, 1) + " fps"
                  + (hud.maxFps > 0 ? " (cap " + hud.maxFps + ")" : "")
            color: "#e6edf3"
            font.pixelSize: 12
        }
        Text {
            objectName: "hudLatency"
            text: "latency " + (hud.view.latencyMs >= 0 ? hud.fixed(hud.view.latencyMs, 1) + " ms" : "n/a") + "   skipped " + hud.view.framesSkipped
            color: "#e6edf3"
            font.pixelSize: 12
        }
        Text {
            objectName: "hudControls"
            // What the controls do right now: the frame's source and the rate asked of the producer.
            text: "source " + (hud.view.frameSource || "none")
                  + (hud.view.rateAsked > 0 ? "   rate asked " + hud.view.rateAsked + "/s (" + hud.view.rateListeners + " listening)"
                     : hud.view.rateAsked === 0 ? "   rate cap lifted (" + hud.view.rateListeners + " listening)" : "")
                  + (hud.view.rateNote ? "   " + hud.view.rateNote : "")
            color: "#e6edf3"
            font.pixelSize: 12
        }
        Text {
            objectName: "hudSize"
            text: hud.view.frameWidth > 0 ? hud.view.frameWidth + "×" + hud.view.frameHeight : ""
            visible: hud.view.frameWidth > 0
            color: "#8b949e"
            font.pixelSize: 11
        }
    }
}
