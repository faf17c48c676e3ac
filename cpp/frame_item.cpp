#include "framelane/frame_item.h"

#include <QtGui/QOpenGLContext>
#include <QtGui/QOpenGLFunctions>
#include <QtQuick/QQuickWindow>
#include <QtQuick/QSGRendererInterface>
#include <QtQuick/QSGSimpleTextureNode>
#include <QtQuick/QSGTexture>
#include <QtQuick/qsgtexture_platform.h>

namespace {

// Longest side a frame may have (a texture of this size is already beyond most GPUs).
constexpr std::uint32_t kMaxSide = 16384;

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

// Texture node for frames. With OpenGL it keeps one texture per frame size and uploads each
// new frame into it (glTexSubImage2D), so no texture is created per frame; with other scene
// graph backends it falls back to a texture made from the staging image.
class FrameNode : public QSGSimpleTextureNode
{
public:
  FrameNode()
  {
    setFiltering(QSGTexture::Linear);
    // The node deletes the texture wrapper it replaces, on the render thread.
    setOwnsTexture(true);
  }

  ~FrameNode() override
  {
    if (m_glTexture != 0) {
      if (QOpenGLContext* context = QOpenGLContext::currentContext())
        context->functions()->glDeleteTextures(1, &m_glTexture);
    }
  }

  // Shows `image`; returns which path was taken.
  FrameItem::UploadPath show(QQuickWindow* window, const QImage& image)
  {
    if (uploadGl(window, image))
      return FrameItem::UploadPath::GlReused;
    QSGTexture* texture = window->createTextureFromImage(image);
    if (!texture)
      return FrameItem::UploadPath::None;
    setTexture(texture);
    return FrameItem::UploadPath::TexturePerFrame;
  }

private:
  bool uploadGl(QQuickWindow* window, const QImage& image)
  {
    if (window->rendererInterface()->graphicsApi() != QSGRendererInterface::OpenGL)
      return false;
    QOpenGLContext* context = QOpenGLContext::currentContext();
    if (!context || context->isOpenGLES())
      return false;
    GLenum format;
    switch (image.format()) {
      case QImage::Format_RGB888:
        format = GL_RGB;
        break;
      case QImage::Format_RGBA8888:
        format = GL_RGBA;
        break;
      case QImage::Format_ARGB32:
        format = 0x80E1; // GL_BGRA
        break;
      default:
        return false;
    }
    QOpenGLFunctions* gl = context->functions();
    GLint previousTexture = 0;
    GLint previousAlignment = 4;
    gl->glGetIntegerv(GL_TEXTURE_BINDING_2D, &previousTexture);
    gl->glGetIntegerv(GL_UNPACK_ALIGNMENT, &previousAlignment);
    if (m_glTexture == 0 || m_size != image.size()) {
      if (m_glTexture != 0)
        gl->glDeleteTextures(1, &m_glTexture);
      gl->glGenTextures(1, &m_glTexture);
      gl->glBindTexture(GL_TEXTURE_2D, m_glTexture);
      gl->glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MIN_FILTER, GL_LINEAR);
      gl->glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MAG_FILTER, GL_LINEAR);
      gl->glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_S, GL_CLAMP_TO_EDGE);
      gl->glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_T, GL_CLAMP_TO_EDGE);
      gl->glTexImage2D(GL_TEXTURE_2D, 0, GL_RGBA, image.width(), image.height(), 0, GL_RGBA, GL_UNSIGNED_BYTE, nullptr);
      m_size = image.size();
      const auto options = image.hasAlphaChannel() ? QQuickWindow::TextureHasAlphaChannel : QQuickWindow::CreateTextureOptions{};
      setTexture(QNativeInterface::QSGOpenGLTexture::fromNative(m_glTexture, window, m_size, options));
    } else {
      gl->glBindTexture(GL_TEXTURE_2D, m_glTexture);
    }
    // QImage rows are 4-byte aligned, which is GL's default unpack alignment.
    gl->glPixelStorei(GL_UNPACK_ALIGNMENT, 4);
    gl->glTexSubImage2D(GL_TEXTURE_2D, 0, 0, 0, image.width(), image.height(), format, GL_UNSIGNED_BYTE, image.constBits());
    gl->glPixelStorei(GL_UNPACK_ALIGNMENT, previousAlignment);
    gl->glBindTexture(GL_TEXTURE_2D, GLuint(previousTexture));
    markDirty(QSGNode::DirtyMaterial);
    return true;
  }

  GLuint m_glTexture = 0;
  QSize m_size;
};

} // namespace

FrameItem::FrameItem(QQuickItem* parent)
  : QQuickItem(parent)
{
  setFlag(ItemHasContents, true);
  m_capTimer = new QTimer(this);
  m_capTimer->setSingleShot(true);
  m_capTimer->setTimerType(Qt::PreciseTimer);
  connect(m_capTimer, &QTimer::timeout, this, &FrameItem::scheduleFrame);
}

int
FrameItem::maxFps() const
{
  return m_maxFps;
}

void
FrameItem::setMaxFps(int fps)
{
  fps = std::max(0, fps);
  if (fps == m_maxFps)
    return;
  m_maxFps = fps;
  Q_EMIT maxFpsChanged();
  scheduleFrame();
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

FrameSource*
FrameItem::source() const
{
  return m_source.data();
}

void
FrameItem::setSource(FrameSource* source)
{
  if (m_source == source)
    return;
  if (m_source)
    disconnect(m_source, nullptr, this, nullptr);
  m_source = source;
  if (source) {
    // Render when the source reports a new frame (or a state change), unless a reference-mode
    // timer sets the cadence.
    connect(source, &FrameSource::frameAvailable, this, &FrameItem::onFrameAvailable);
  }
  Q_EMIT sourceChanged();
  scheduleFrame();
}

QRectF
FrameItem::paintedRect() const
{
  return m_paintedRect;
}

QString
FrameItem::uploadPath() const
{
  switch (UploadPath(m_uploadPath.load(std::memory_order_relaxed))) {
    case UploadPath::GlReused:
      return QStringLiteral("opengl-texture-reused");
    case UploadPath::TexturePerFrame:
      return QStringLiteral("texture-per-frame");
    case UploadPath::None:
      break;
  }
  return QStringLiteral("none");
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
  if (FrameSource* source = m_source.data())
    source->framePresented();
}

void
FrameItem::scheduleFrame()
{
  m_sinceScheduled.start();
  // Polish (choose the frame, lay out its HUD) and sync (copy it) in the window's next frame.
  polish();
  update();
}

void
FrameItem::updatePolish()
{
  if (FrameSource* source = m_source.data())
    source->tick();
}

void
FrameItem::onFrameAvailable()
{
  if (m_pollTimer)
    return;
  if (m_maxFps > 0 && m_sinceScheduled.isValid()) {
    const qint64 slot = 1000 / m_maxFps;
    const qint64 since = m_sinceScheduled.elapsed();
    if (since < slot) {
      // Too soon: one render at the next slot shows whatever is newest then.
      if (!m_capTimer->isActive())
        m_capTimer->start(int(slot - since));
      return;
    }
  }
  scheduleFrame();
}

void
FrameItem::afterSync()
{
  if (m_paintedRect != m_lastReportedRect) {
    m_lastReportedRect = m_paintedRect;
    Q_EMIT paintedRectChanged();
  }
}

QSGNode*
FrameItem::updatePaintNode(QSGNode* old, UpdatePaintNodeData*)
{
  auto* node = static_cast<FrameNode*>(old);
  QMetaObject::invokeMethod(this, &FrameItem::afterSync, Qt::QueuedConnection);
  FrameSource* source = m_source.data();
  if (!source) {
    delete node;
    m_paintedRect = {};
    return nullptr;
  }
  std::uint32_t width = 0;
  std::uint32_t height = 0;
  std::uint32_t code = 0;
  source->frameShape(width, height, code);
  const QImage::Format format = imageFormatFor(code);
  // No frame (or a shape beyond what a QImage holds): nothing on screen, not the frame of
  // another source or of a run that is gone.
  if (width == 0 || height == 0 || width > kMaxSide || height > kMaxSide || format == QImage::Format_Invalid) {
    delete node;
    m_paintedRect = {};
    return nullptr;
  }
  const QSize size{ int(width), int(height) };
  if (m_staging.size() != size || m_staging.format() != format)
    m_staging = QImage(size, format);
  if (m_staging.isNull())
    return node;

  const bool fresh = source->grabFrame(
    rust::Slice<std::uint8_t>(m_staging.bits(), std::size_t(m_staging.sizeInBytes())),
    std::size_t(m_staging.bytesPerLine()));

  if (fresh) {
    if (!node)
      node = new FrameNode();
    const UploadPath path = node->show(window(), m_staging);
    m_uploadPath.store(int(path), std::memory_order_relaxed);
    if (path == UploadPath::None) {
      delete node;
      return nullptr;
    }
    m_awaitingSwap = true;
  }
  if (!node)
    return nullptr;
  m_paintedRect = fitted(QSizeF(size), boundingRect());
  node->setRect(m_paintedRect);
  node->markDirty(QSGNode::DirtyMaterial);
  return node;
}
