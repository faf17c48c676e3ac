#include "framelane/frame_item.h"

#include <QtQuick/QQuickWindow>
#include <QtQuick/QSGSimpleTextureNode>
#include <QtQuick/QSGTexture>

#include "framelane/src/ui/live_view.cxxqt.h"

namespace {

QImage::Format
imageFormatFor(std::uint32_t code)
{
  switch (code) {
    case 1:
      return QImage::Format_RGB888;
    case 2:
      return QImage::Format_RGBA8888;
    case 3:
      return QImage::Format_ARGB32; // little-endian BGRA
    default:
      return QImage::Format_Invalid;
  }
}

QRectF
fitted(const QSizeF& frame, const QRectF& bounds)
{
  if (frame.isEmpty() || bounds.isEmpty())
    return {};
  QSizeF size = frame.scaled(bounds.size(), Qt::KeepAspectRatio);
  return QRectF(bounds.x() + (bounds.width() - size.width()) / 2.0,
                bounds.y() + (bounds.height() - size.height()) / 2.0,
                size.width(),
                size.height());
}

} // namespace

FrameItem::FrameItem(QQuickItem* parent)
  : QQuickItem(parent)
{
  setFlag(ItemHasContents, true);
}

FrameItem::~FrameItem() = default;

int
FrameItem::pollIntervalMs() const
{
  return m_pollTimer ? m_pollTimer->interval() : 0;
}

void
FrameItem::setPollIntervalMs(int ms)
{
  if (ms == pollIntervalMs())
    return;
  delete m_pollTimer;
  m_pollTimer = nullptr;
  if (ms > 0) {
    m_pollTimer = new QTimer(this);
    m_pollTimer->setTimerType(Qt::PreciseTimer);
    m_pollTimer->setInterval(ms);
    connect(m_pollTimer, &QTimer::timeout, this, &FrameItem::scheduleFrame);
    m_pollTimer->start();
  }
  Q_EMIT pollIntervalMsChanged();
}

QObject*
FrameItem::view() const
{
  return m_view.data();
}

void
FrameItem::setView(QObject* view)
{
  if (m_view == view)
    return;
  m_view = view;
  Q_EMIT viewChanged();
  scheduleFrame();
}

QRectF
FrameItem::paintedRect() const
{
  return m_paintedRect;
}

void
FrameItem::itemChange(ItemChange change, const ItemChangeData& value)
{
  if (change == ItemSceneChange) {
    QObject::disconnect(m_swapConnection);
    if (value.window) {
      // Emitted on the render thread after the swap that put our frame on screen.
      m_swapConnection = connect(value.window,
                                 &QQuickWindow::frameSwapped,
                                 this,
                                 &FrameItem::onFrameSwapped,
                                 Qt::DirectConnection);
    }
  }
  QQuickItem::itemChange(change, value);
}

void
FrameItem::onFrameSwapped()
{
  if (!m_awaitingSwap)
    return;
  m_awaitingSwap = false;
  if (auto* live = qobject_cast<LiveView*>(m_view.data()))
    live->framePresented();
}

void
FrameItem::scheduleFrame()
{
  // Polish (choose the frame, lay out its HUD) and sync (copy it) in the window's next frame.
  polish();
  update();
}

void
FrameItem::updatePolish()
{
  if (auto* live = qobject_cast<LiveView*>(m_view.data()))
    live->tick();
}

void
FrameItem::afterSync()
{
  if (m_paintedRect != m_lastReportedRect) {
    m_lastReportedRect = m_paintedRect;
    Q_EMIT paintedRectChanged();
  }
  // Sample again at the next frame of the window: the display sets the cadence.
  if (!m_pollTimer)
    scheduleFrame();
}

QSGNode*
FrameItem::updatePaintNode(QSGNode* old, UpdatePaintNodeData*)
{
  auto* node = static_cast<QSGSimpleTextureNode*>(old);
  auto* live = qobject_cast<LiveView*>(m_view.data());
  // Whatever happens below, the GUI thread schedules the next frame afterwards.
  QMetaObject::invokeMethod(this, &FrameItem::afterSync, Qt::QueuedConnection);
  if (!live) {
    delete node;
    m_paintedRect = {};
    return nullptr;
  }

  const FrameShape shape = live->frameShape();
  const QImage::Format format = imageFormatFor(shape.format);
  if (shape.width == 0 || format == QImage::Format_Invalid)
    return node;
  const QSize size(int(shape.width), int(shape.height));
  if (m_staging.size() != size || m_staging.format() != format)
    m_staging = QImage(size, format);

  const bool fresh = live->grabFrame(
    rust::Slice<std::uint8_t>(m_staging.bits(), std::size_t(m_staging.sizeInBytes())),
    std::size_t(m_staging.bytesPerLine()));

  if (fresh) {
    QSGTexture* texture = window()->createTextureFromImage(m_staging);
    if (!texture)
      return node;
    if (!node) {
      node = new QSGSimpleTextureNode();
      node->setFiltering(QSGTexture::Linear);
      // The node deletes the texture it replaces, on the render thread.
      node->setOwnsTexture(true);
    }
    node->setTexture(texture);
    m_awaitingSwap = true;
  }
  if (!node)
    return nullptr;
  m_paintedRect = fitted(QSizeF(size), boundingRect());
  node->setRect(m_paintedRect);
  node->markDirty(QSGNode::DirtyMaterial);
  return node;
}
