#include "framelane/app.h"

#include <QtCore/QFile>
#include <QtCore/QJsonArray>
#include <QtCore/QJsonDocument>
#include <QtCore/QJsonObject>
#include <QtCore/QFileInfo>
#include <QtCore/QSaveFile>
#include <QtCore/QTimer>
#include <QtGui/QGuiApplication>
#include <QtQml/QQmlApplicationEngine>
#include <QtQml/QQmlError>
#include <QtQuick/QQuickItem>
#include <QtQuick/QQuickWindow>

#include <algorithm>
#include <cstdio>

#include "framelane/src/ui/app.cxx.h"

namespace framelane {

namespace {

QString
toQString(const rust::String& s)
{
  return QString::fromUtf8(s.data(), qsizetype(s.size()));
}

// Text of the labels whose name starts with `prefix` (the HUD's, the metrics panel's), so tests
// and scripts can check what the window shows.
QJsonObject
labelTexts(QObject* root, const QString& prefix)
{
  QJsonObject out;
  const auto items = root->findChildren<QQuickItem*>();
  for (QQuickItem* item : items) {
    const QString name = item->objectName();
    if (name.startsWith(prefix) && item->property("text").isValid())
      out.insert(name, item->property("text").toString());
  }
  return out;
}

// What a clip player shows: its file, frame, frames shown, whether it plays, why not.
QJsonObject
playerState(const QObject* player)
{
  QJsonObject out;
  for (const char* name : { "file", "position", "shown", "playing", "note" })
    out.insert(QString::fromLatin1(name), QJsonValue::fromVariant(player->property(name)));
  return out;
}

QJsonObject
statsOf(QObject* root, QQuickWindow* window)
{
  QJsonObject stats;
  if (auto* live = root->findChild<QObject*>(QStringLiteral("liveView"))) {
    QString json;
    QMetaObject::invokeMethod(live, "statsJson", Qt::DirectConnection, Q_RETURN_ARG(QString, json));
    stats = QJsonDocument::fromJson(json.toUtf8()).object();
  }
  if (auto* frame = root->findChild<QQuickItem*>(QStringLiteral("frameItem"))) {
    const QRectF local = frame->property("paintedRect").toRectF();
    const QRectF scene = frame->mapRectToScene(local);
    const qreal dpr = window->effectiveDevicePixelRatio();
    stats.insert(QStringLiteral("upload_path"), frame->property("uploadPath").toString());
    stats.insert(QStringLiteral("painted_rect"),
                 QJsonArray{ scene.x() * dpr, scene.y() * dpr, scene.width() * dpr, scene.height() * dpr });
  }
  if (auto* panel = root->findChild<QQuickItem*>(QStringLiteral("hudPanel"))) {
    const QRectF scene = panel->mapRectToScene(panel->boundingRect());
    const qreal dpr = window->effectiveDevicePixelRatio();
    stats.insert(QStringLiteral("hud_rect"),
                 QJsonArray{ scene.x() * dpr, scene.y() * dpr, scene.width() * dpr, scene.height() * dpr });
  }
  stats.insert(QStringLiteral("hud"), labelTexts(root, QStringLiteral("hud")));
  stats.insert(QStringLiteral("metrics"), labelTexts(root, QStringLiteral("metrics")));
  if (auto* live = root->findChild<QObject*>(QStringLiteral("liveView"))) {
    QJsonObject c;
    for (const char* name : { "preferSharedMemory", "frameSource", "rateAsked", "rateListeners", "rateNote", "autoSlow" })
      c.insert(QString::fromLatin1(name), QJsonValue::fromVariant(live->property(name)));
    stats.insert(QStringLiteral("controls"), c);
  }
  if (auto* plot = root->findChild<QObject*>(QStringLiteral("runPlot")))
    stats.insert(QStringLiteral("plot_points"), plot->property("pointCount").toInt());
  if (auto* plotItem = root->findChild<QQuickItem*>(QStringLiteral("plotItem"))) {
    const QRectF scene = plotItem->mapRectToScene(plotItem->boundingRect());
    const qreal dpr = window->effectiveDevicePixelRatio();
    stats.insert(QStringLiteral("plot_rect"),
                 QJsonArray{ scene.x() * dpr, scene.y() * dpr, scene.width() * dpr, scene.height() * dpr });
    stats.insert(QStringLiteral("plot_visible"), plotItem->isVisible());
  }
  if (auto* replay = root->findChild<QObject*>(QStringLiteral("replayView"))) {
    QJsonObject r;
    for (const char* name : { "runId", "workerId", "workers", "agentId", "agents", "episode", "position", "stepCount", "step", "frameOrigin", "note", "openMs", "loading" })
      r.insert(QString::fromLatin1(name), QJsonValue::fromVariant(replay->property(name)));
    if (auto* episodes = root->findChild<QObject*>(QStringLiteral("replayEpisodeList")))
      r.insert(QStringLiteral("episodes"), episodes->property("count").toInt());
    if (auto* series = root->findChild<QObject*>(QStringLiteral("replaySeries"))) {
      for (const char* name : { "overviewPoints", "runSteps" })
        r.insert(QString::fromLatin1(name), QJsonValue::fromVariant(series->property(name)));
    }
    stats.insert(QStringLiteral("replay"), r);
  }
  if (auto* analysis = root->findChild<QObject*>(QStringLiteral("analysisView"))) {
    QJsonObject a;
    for (const char* name : { "folder", "count", "position", "frame", "shownFrame", "faces", "cutCount", "trackCount", "reason", "note", "loading" })
      a.insert(QString::fromLatin1(name), QJsonValue::fromVariant(analysis->property(name)));
    stats.insert(QStringLiteral("analysis"), a);
  }
  if (auto* rig = root->findChild<QObject*>(QStringLiteral("rigControl"))) {
    QJsonObject r;
    for (const char* name : { "config", "cameraCount", "clips", "triggers", "diskFreeMb", "hoursLeft", "lastClip", "error" })
      r.insert(QString::fromLatin1(name), QJsonValue::fromVariant(rig->property(name)));
    QJsonArray previews;
    const qreal dpr = window->effectiveDevicePixelRatio();
    const QObject* kiosk = root->findChild<QObject*>(QStringLiteral("rigKiosk"));
    const QVariantList items = kiosk ? kiosk->property("previewItems").toList() : QVariantList();
    for (const QVariant& value : items) {
      auto* item = qvariant_cast<QQuickItem*>(value);
      if (!item)
        continue;
      const QRectF scene = item->mapRectToScene(item->property("paintedRect").toRectF());
      previews.append(QJsonArray{ scene.x() * dpr, scene.y() * dpr, scene.width() * dpr, scene.height() * dpr });
    }
    r.insert(QStringLiteral("previews"), previews);
    // Clip thumbnails: where each is painted and what its player shows.
    QJsonArray thumbs;
    const QVariantList thumbItems = kiosk ? kiosk->property("thumbItems").toList() : QVariantList();
    const QVariantList thumbPlayers = kiosk ? kiosk->property("thumbPlayers").toList() : QVariantList();
    for (qsizetype i = 0; i < thumbItems.size() && i < thumbPlayers.size(); ++i) {
      auto* item = qvariant_cast<QQuickItem*>(thumbItems[i]);
      auto* player = qvariant_cast<QObject*>(thumbPlayers[i]);
      if (!item || !player)
        continue;
      QJsonObject t = playerState(player);
      const QRectF scene = item->mapRectToScene(item->property("paintedRect").toRectF());
      t.insert(QStringLiteral("rect"), QJsonArray{ scene.x() * dpr, scene.y() * dpr, scene.width() * dpr, scene.height() * dpr });
      thumbs.append(t);
    }
    r.insert(QStringLiteral("thumbs"), thumbs);
    // The per-camera lines as the window shows them (the bound text, not a fresh call).
    QJsonArray lines;
    const QVariantList lineItems = kiosk ? kiosk->property("lineItems").toList() : QVariantList();
    for (const QVariant& value : lineItems) {
      const auto* line = qvariant_cast<QObject*>(value);
      lines.append(line ? line->property("text").toString() : QString());
    }
    r.insert(QStringLiteral("cameraLines"), lines);
    if (auto* button = root->findChild<QQuickItem*>(QStringLiteral("rigTrigger"))) {
      const QRectF scene = button->mapRectToScene(button->boundingRect());
      r.insert(QStringLiteral("trigger_rect"), QJsonArray{ scene.x() * dpr, scene.y() * dpr, scene.width() * dpr, scene.height() * dpr });
    }
    stats.insert(QStringLiteral("rig"), r);
  }
  if (auto* clips = root->findChild<QObject*>(QStringLiteral("clipCatalog"))) {
    QJsonObject c;
    c.insert(QStringLiteral("count"), clips->property("count").toInt());
    c.insert(QStringLiteral("note"), clips->property("note").toString());
    if (auto* player = root->findChild<QObject*>(QStringLiteral("clipPlayer")))
      c.insert(QStringLiteral("player"), playerState(player));
    stats.insert(QStringLiteral("clips"), c);
  }
  if (auto* catalog = root->findChild<QObject*>(QStringLiteral("runCatalog")))
    stats.insert(QStringLiteral("fastlane_runs"), catalog->property("count").toInt());
  if (auto* list = root->findChild<QObject*>(QStringLiteral("runList")))
    stats.insert(QStringLiteral("fastlane_runs_listed"), list->property("count").toInt());
  if (auto* runs = root->findChild<QObject*>(QStringLiteral("telemetryRunList")))
    stats.insert(QStringLiteral("telemetry_runs"), runs->property("count").toInt());
  stats.insert(QStringLiteral("graphics_api"), int(window->rendererInterface()->graphicsApi()));
  return stats;
}

// Writes `bytes` to `path` through a temporary file renamed into place, so a reader polling
// the file never sees half of it.
bool
writeFile(const QString& path, const QByteArray& bytes)
{
  QSaveFile file(path);
  if (!file.open(QIODevice::WriteOnly) || file.write(bytes) != bytes.size() || !file.commit()) {
    std::fprintf(stderr, "framelane: cannot write %s: %s\n", qPrintable(path), qPrintable(file.errorString()));
    return false;
  }
  return true;
}

} // namespace

std::int32_t
runApplication(const AppOptions& options)
{
  static int argc = 1;
  static char name[] = "framelane";
  static char* argv[] = { name, nullptr };
  QGuiApplication app(argc, argv);
  QGuiApplication::setApplicationName(QStringLiteral("framelane"));
  QGuiApplication::setOrganizationDomain(QStringLiteral("framelane.dev"));

  QQmlApplicationEngine engine;
  QStringList problems;
  QObject::connect(&engine, &QQmlEngine::warnings, [&problems](const QList<QQmlError>& warnings) {
    for (const QQmlError& warning : warnings) {
      problems << warning.toString();
      std::fprintf(stderr, "framelane: QML: %s\n", qPrintable(warning.toString()));
    }
  });
  engine.setInitialProperties({
    { QStringLiteral("initialRunId"), toQString(options.initial_run_id) },
    { QStringLiteral("title"), toQString(options.window_title) },
    { QStringLiteral("pollIntervalMs"), int(options.poll_interval_ms) },
    { QStringLiteral("maxFps"), int(options.max_fps) },
    { QStringLiteral("daemonAddress"), toQString(options.daemon_address) },
    { QStringLiteral("initialPlotRunId"), toQString(options.plot_run_id) },
    { QStringLiteral("dataDir"), toQString(options.data_dir) },
    { QStringLiteral("initialReplayRunId"), toQString(options.replay_run_id) },
    { QStringLiteral("initialReplayWorker"), toQString(options.replay_worker) },
    { QStringLiteral("initialReplayAgent"), toQString(options.replay_agent) },
    { QStringLiteral("initialAnalysis"), toQString(options.analysis_dir) },
    { QStringLiteral("initialClip"), toQString(options.replay_clip) },
    { QStringLiteral("playInitialClip"), options.play_clip },
    { QStringLiteral("rigConfig"), toQString(options.rig_config) },
    { QStringLiteral("preferSharedMemory"), !options.no_shared_memory },
    { QStringLiteral("initialAskRate"), int(options.ask_rate_hz) },
    { QStringLiteral("autoSlow"), options.auto_slow },
    { QStringLiteral("showMetrics"), options.show_metrics },
    { QStringLiteral("width"), int(options.window_width) },
    { QStringLiteral("height"), int(options.window_height) },
    { QStringLiteral("visibility"), options.fullscreen ? int(QWindow::FullScreen) : int(QWindow::Windowed) },
  });
  engine.load(QUrl(QStringLiteral("qrc:/qt/qml/dev/framelane/qml/Main.qml")));
  if (engine.rootObjects().isEmpty()) {
    std::fprintf(stderr, "framelane: the main window could not be loaded (see the QML errors above)\n");
    return 3;
  }
  auto* window = qobject_cast<QQuickWindow*>(engine.rootObjects().constFirst());
  if (!window) {
    std::fprintf(stderr, "framelane: Main.qml does not define a window\n");
    return 3;
  }

  const QString screenshotPath = toQString(options.screenshot_path);
  const QString statsPath = toQString(options.stats_path);
  int exitCode = 0;
  auto finish = [&]() {
    if (!screenshotPath.isEmpty()) {
      const QImage image = window->grabWindow();
      if (image.isNull() || !image.save(screenshotPath)) {
        std::fprintf(stderr, "framelane: could not save a screenshot to %s\n", qPrintable(screenshotPath));
        exitCode = 4;
      }
    }
    if (!statsPath.isEmpty()) {
      if (!writeFile(statsPath, QJsonDocument(statsOf(window, window)).toJson()))
        exitCode = 4;
    }
    QGuiApplication::exit(exitCode);
  };

  if (options.smoke_test) {
    // One rendered frame, then report: any QML warning or a failed grab fails the check.
    QObject::connect(window, &QQuickWindow::frameSwapped, &app, [&]() {
      static bool done = false;
      if (done)
        return;
      done = true;
      QMetaObject::invokeMethod(&app, [&]() {
        const QImage image = window->grabWindow();
        if (image.isNull()) {
          std::fprintf(stderr, "framelane: smoke test: the window could not be rendered\n");
          QGuiApplication::exit(5);
          return;
        }
        if (!problems.isEmpty()) {
          std::fprintf(stderr, "framelane: smoke test: %lld QML problem(s)\n", (long long)problems.size());
          QGuiApplication::exit(6);
          return;
        }
        std::printf("framelane: smoke test passed (%dx%d rendered, graphics API %d)\n",
                    image.width(), image.height(), int(window->rendererInterface()->graphicsApi()));
        std::fflush(stdout);
        QGuiApplication::exit(0);
      }, Qt::QueuedConnection);
    }, Qt::QueuedConnection);
    QTimer::singleShot(20000, &app, []() {
      std::fprintf(stderr, "framelane: smoke test: no frame was rendered within 20 s\n");
      QGuiApplication::exit(7);
    });
  } else {
    if (options.exit_after_ms > 0)
      QTimer::singleShot(int(options.exit_after_ms), &app, finish);
    const QString quitFile = toQString(options.quit_file);
    if (!quitFile.isEmpty()) {
      auto* watch = new QTimer(&app);
      QObject::connect(watch, &QTimer::timeout, &app, [quitFile, watch, finish]() {
        if (QFileInfo::exists(quitFile)) {
          watch->stop();
          finish();
        }
      });
      watch->start(50);
    }
    if (options.stats_interval_ms > 0 && !statsPath.isEmpty()) {
      auto* stats = new QTimer(&app);
      QObject::connect(stats, &QTimer::timeout, &app, [statsPath, window]() {
        writeFile(statsPath, QJsonDocument(statsOf(window, window)).toJson());
      });
      stats->start(int(std::min<std::uint64_t>(options.stats_interval_ms, 60000)));
    }
  }

  const int code = QGuiApplication::exec();
  const bool finishedWithStats = options.exit_after_ms > 0 || !toQString(options.quit_file).isEmpty();
  if (!finishedWithStats && !options.smoke_test && !statsPath.isEmpty())
    writeFile(statsPath, QJsonDocument(statsOf(window, window)).toJson());
  return code;
}

} // namespace framelane
