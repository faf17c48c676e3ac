import QtQuick
import QtQuick.Layouts
import dev.framelane

// Pipeline figures, refreshed once a second: the window's own (frame time, late frames,
// frames shown and skipped) beside the daemon's (steps/s, store batches and commits, WAL
// checkpoints, queues, shed items, encoders, memory), the same figures `--metrics` serves.
Rectangle {
    id: panel

    required property var view
    property string daemonAddress: ""

    property var live: ({})
    property var daemon: ({})
    // Encoded frames at the last refresh, for the encoder's frames per second.
    property real lastEncoded: -1
    property real encoderFps: 0

    function fixed(value, digits) {
        return value === undefined || value === null || isNaN(value) ? "n/a" : Number(value).toFixed(digits);
    }
    function ms(seconds) {
        return seconds === undefined ? "n/a" : fixed(seconds * 1000, 1) + " ms";
    }
    function figure(name) {
        return panel.daemon[name];
    }
    function runFigure(name) {
        return panel.daemon[name + "{run=\"" + panel.view.runId + "\"}"];
    }
    function shedText() {
        const parts = [];
        for (const key in panel.daemon) {
            const m = key.match(/^framelane_shed_total\{kind="(.*)"\}$/);
            if (m && panel.daemon[key] > 0)
                parts.push(panel.daemon[key] + " " + m[1].replace(/_/g, " "));
        }
        return parts.length ? parts.join(", ") : "none";
    }
    function refresh() {
        try {
            panel.live = JSON.parse(panel.view.statsJson());
        } catch (e) {
            panel.live = ({});
        }
        try {
            panel.daemon = JSON.parse(daemonMetrics.figuresJson);
        } catch (e) {
            panel.daemon = ({});
        }
        const encoded = panel.figure("framelane_encoder_frames_encoded_total");
        if (encoded !== undefined) {
            panel.encoderFps = panel.lastEncoded >= 0 ? Math.max(0, encoded - panel.lastEncoded) : 0;
            panel.lastEncoded = encoded;
        }
    }

    width: 340
    height: column.implicitHeight + 16
    radius: 6
    color: "#e0101214"
    border.color: "#40ffffff"

    DaemonMetrics {
        id: daemonMetrics
        objectName: "daemonMetrics"
        address: panel.visible ? panel.daemonAddress : ""
    }

    Timer {
        interval: 1000
        running: panel.visible
        repeat: true
        triggeredOnStart: true
        onTriggered: panel.refresh()
    }

    ColumnLayout {
        id: column
        anchors.left: parent.left
        anchors.right: parent.right
        anchors.top: parent.top
        anchors.margins: 8
        spacing: 2

        Text {
            text: "Window"
            color: "#ffffff"
            font.bold: true
            font.pixelSize: 13
        }
        Text {
            objectName: "metricsFrameTime"
            text: "frame time p50 " + panel.fixed(panel.live.frame_time_p50_ms, 1) + " ms   p99 " + panel.fixed(panel.live.frame_time_p99_ms, 1) + " ms"
            color: "#e6edf3"
            font.pixelSize: 12
        }
        // Frame-time histogram: one bar per bucket up to 100 ms, heights relative to the tallest.
        Row {
            objectName: "metricsHistogram"
            spacing: 2
            height: 28
            readonly property var buckets: (panel.live.frame_time_histogram || []).filter(b => b.le_ms !== null && b.le_ms <= 100)
            readonly property real tallest: Math.max(1, ...buckets.map(b => b.count))
            Repeater {
                model: parent.buckets
                Rectangle {
                    required property var modelData
                    width: 14
                    height: Math.max(1, 28 * modelData.count / parent.tallest)
                    anchors.bottom: parent.bottom
                    color: modelData.le_ms > 25 ? "#f0b72f" : "#7ee787"
                }
            }
        }
        Text {
            objectName: "metricsJank"
            text: "late frames (jank) " + (panel.live.late_frames ?? 0) + "   display " + panel.fixed(panel.live.display_fps, 1) + " fps"
            color: "#e6edf3"
            font.pixelSize: 12
        }
        Text {
            objectName: "metricsFrames"
            text: "shown " + (panel.live.frames_presented ?? 0) + "   skipped " + (panel.live.frames_skipped ?? 0) + "   source " + (panel.view.frameSource || "none")
            color: "#e6edf3"
            font.pixelSize: 12
        }
        Text {
            text: "Daemon" + (daemonMetrics.error ? " — " + daemonMetrics.error : "")
            color: "#ffffff"
            font.bold: true
            font.pixelSize: 13
            Layout.topMargin: 4
            visible: panel.daemonAddress !== ""
        }
        Text {
            objectName: "metricsStepRate"
            visible: panel.daemonAddress !== ""
            text: "steps/s (gRPC) " + panel.fixed(panel.runFigure("framelane_run_steps_per_second"), 1) + "   vs display " + panel.fixed(panel.live.display_fps, 1) + " fps"
            color: "#e6edf3"
            font.pixelSize: 12
        }
        Text {
            objectName: "metricsStore"
            visible: panel.daemonAddress !== ""
            text: "store: batch " + panel.fixed(panel.figure("framelane_store_batch_rows_p50"), 0) + " rows, commit p50 " + panel.ms(panel.figure("framelane_store_commit_seconds_p50")) + " p99 " + panel.ms(panel.figure("framelane_store_commit_seconds_p99"))
            color: "#e6edf3"
            font.pixelSize: 12
        }
        Text {
            objectName: "metricsCheckpoint"
            visible: panel.daemonAddress !== ""
            text: "WAL checkpoints " + (panel.figure("framelane_store_wal_checkpoints_total") ?? 0) + ", p99 " + panel.ms(panel.figure("framelane_store_wal_checkpoint_seconds_p99"))
            color: "#e6edf3"
            font.pixelSize: 12
        }
        Text {
            objectName: "metricsQueues"
            visible: panel.daemonAddress !== ""
            text: "queues: store " + (panel.figure("framelane_store_queue_depth") ?? 0) + "/" + (panel.figure("framelane_store_queue_capacity") ?? 0) + ", encoder " + (panel.figure("framelane_encoder_queue_frames") ?? 0) + " frames"
            color: "#e6edf3"
            font.pixelSize: 12
        }
        Text {
            objectName: "metricsShed"
            visible: panel.daemonAddress !== ""
            text: "shed: " + panel.shedText()
            color: "#e6edf3"
            font.pixelSize: 12
            wrapMode: Text.Wrap
            Layout.fillWidth: true
        }
        Text {
            objectName: "metricsEncoder"
            visible: panel.daemonAddress !== ""
            text: "encoders: " + panel.fixed(panel.encoderFps, 0) + " fps, " + (panel.figure("framelane_encoder_frames_behind") ?? 0) + " frames behind, " + (panel.figure("framelane_encoder_jobs_open") ?? 0) + " jobs"
            color: "#e6edf3"
            font.pixelSize: 12
        }
        Text {
            objectName: "metricsMemory"
            visible: panel.daemonAddress !== ""
            text: "memory " + panel.fixed((panel.figure("framelane_process_resident_memory_bytes") ?? NaN) / 1048576, 0) + " MiB resident; queued " + panel.fixed((panel.figure("framelane_memory_used_bytes") ?? NaN) / 1048576, 0) + " of " + panel.fixed((panel.figure("framelane_memory_limit_bytes") ?? NaN) / 1048576, 0) + " MiB ceiling, " + (panel.figure("framelane_memory_waits_total") ?? 0) + " waits, " + (panel.figure("framelane_memory_refused_total") ?? 0) + " refused"
            color: "#e6edf3"
            font.pixelSize: 12
        }
    }
}
