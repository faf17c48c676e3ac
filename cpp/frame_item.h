#pragma once

#include <atomic>

#include <QtCore/QPointer>
#include <QtCore/QElapsedTimer>
#include <QtCore/QTimer>
#include <QtGui/QImage>
#include <QtQml/QQmlEngine>
#include <QtQuick/QQuickItem>

#include "framelane/frame_source.h"

// Scene-graph item that paints the frames of a FrameSource (the live view, replay, ...). On the
// render thread (GUI thread blocked in sync) it has the source copy its frame once into a
// staging image and uploads it; the source refreshes its HUD on the GUI thread right before.
class FrameItem : public QQuickItem
{
  Q_OBJECT
  QML_ELEMENT
  Q_PROPERTY(FrameSource* source READ source WRITE setSource NOTIFY sourceChanged)
  Q_PROPERTY(QRectF paintedRect READ paintedRect NOTIFY paintedRectChanged)
  // How the last frame reached the GPU: "opengl-texture-reused", "texture-per-frame" or "none".
  Q_PROPERTY(QString uploadPath READ uploadPath)
  // 0: sample at every rendered frame. N > 0: sample only when a GUI-thread timer of N ms
  // fires (the reference design, kept for comparisons).
  Q_PROPERTY(int pollIntervalMs READ pollIntervalMs WRITE setPollIntervalMs NOTIFY pollIntervalMsChanged)
  // Renders at most this many frames a second (0: no cap): new frames that come sooner wait
  // for the next slot, and the newest one is shown then.
  Q_PROPERTY(int maxFps READ maxFps WRITE setMaxFps NOTIFY maxFpsChanged)

public:
  enum class UploadPath
  {
    None,
    GlReused,
    TexturePerFrame,
  };

  explicit FrameItem(QQuickItem* parent = nullptr);
  ~FrameItem() override;

  FrameSource* source() const;
  void setSource(FrameSource* source);
  // Where the frame is drawn, in item coordinates (aspect ratio kept, centred).
  QRectF paintedRect() const;
  QString uploadPath() const;
  int pollIntervalMs() const;
  void setPollIntervalMs(int ms);
  int maxFps() const;
  void setMaxFps(int fps);

Q_SIGNALS:
  void sourceChanged();
  void paintedRectChanged();
  void pollIntervalMsChanged();
  void maxFpsChanged();

protected:
  void updatePolish() override;
  QSGNode* updatePaintNode(QSGNode* old, UpdatePaintNodeData* data) override;
  void itemChange(ItemChange change, const ItemChangeData& value) override;

private Q_SLOTS:
  void onFrameAvailable();

private:
  void afterSync();
  void scheduleFrame();
  void onFrameSwapped();

  QPointer<FrameSource> m_source;
  QImage m_staging;
  QRectF m_paintedRect;
  QRectF m_lastReportedRect;
  QMetaObject::Connection m_swapConnection;
  bool m_awaitingSwap = false;
  std::atomic<int> m_uploadPath{ 0 };
  QTimer* m_pollTimer = nullptr;
  int m_maxFps = 0;
  // When the last frame was scheduled, and the timer that schedules a held-back one.
  QElapsedTimer m_sinceScheduled;
  QTimer* m_capTimer = nullptr;
};
