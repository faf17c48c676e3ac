#include "framelane/plot_item.h"

#include <QtGui/QPainter>
#include <QtQuick/QQuickWindow>
#include <QtQuick/QSGFlatColorMaterial>
#include <QtQuick/QSGGeometryNode>
#include <QtQuick/QSGRendererInterface>
#include <QtQuick/QSGSimpleTextureNode>

#include <algorithm>
#include <limits>


PlotItem::PlotItem(QQuickItem* parent)
  : QQuickItem(parent)
{
  setFlag(ItemHasContents, true);
}

int
PlotItem::channel() const
{
  return m_channel;
}

void
PlotItem::setChannel(int channel)
{
  if (m_channel == channel)
    return;
  m_channel = channel;
  Q_EMIT channelChanged();
  update();
}

double
PlotItem::minX() const
{
  return m_minX;
}

double
PlotItem::maxX() const
{
  return m_maxX;
}

PlotSource*
PlotItem::source() const
{
  return m_source.data();
}

void
PlotItem::setSource(PlotSource* source)
{
  if (m_source == source)
    return;
  if (m_source)
    disconnect(m_source, nullptr, this, nullptr);
  m_source = source;
  if (source)
    connect(source, &PlotSource::pointsChanged, this, &QQuickItem::update);
  Q_EMIT sourceChanged();
  update();
}

QColor
PlotItem::color() const
{
  return m_color;
}

void
PlotItem::setColor(const QColor& color)
{
  if (m_color == color)
    return;
  m_color = color;
  Q_EMIT colorChanged();
  update();
}

double
PlotItem::minY() const
{
  return m_minY;
}

double
PlotItem::maxY() const
{
  return m_maxY;
}

void
PlotItem::publishRange()
{
  Q_EMIT rangeChanged();
}

// The software scene graph draws no custom geometry: there the line is painted into an image.
static QSGNode*
softwareLine(QQuickWindow* window, QSGNode* old, const std::vector<QPointF>& vertices, QSizeF size, const QColor& color)
{
  auto* node = static_cast<QSGSimpleTextureNode*>(old);
  QImage image(size.toSize(), QImage::Format_ARGB32_Premultiplied);
  image.fill(Qt::transparent);
  {
    QPainter painter(&image);
    painter.setRenderHint(QPainter::Antialiasing);
    painter.setPen(QPen(color, 1.5));
    painter.drawPolyline(vertices.data(), int(vertices.size()));
  }
  QSGTexture* texture = window->createTextureFromImage(image);
  if (!texture)
    return node;
  if (!node) {
    node = new QSGSimpleTextureNode();
    node->setOwnsTexture(true);
  }
  node->setTexture(texture);
  node->setRect(QRectF(QPointF(0, 0), size));
  return node;
}

QSGNode*
PlotItem::updatePaintNode(QSGNode* old, UpdatePaintNodeData*)
{
  const bool software = window()->rendererInterface()->graphicsApi() == QSGRendererInterface::Software;
  auto* node = software ? nullptr : static_cast<QSGGeometryNode*>(old);
  PlotSource* source = m_source.data();
  const std::size_t count = source ? source->channelLength(m_channel) : 0;
  const int columns = std::max(1, int(width()));
  if (count < 2 || width() < 2 || height() < 2) {
    delete old;
    return nullptr;
  }
  m_points.resize(count * 2);
  const std::size_t n = std::min(count, source->copyChannel(m_channel, rust::Slice<double>(m_points.data(), m_points.size())));
  if (n < 2) {
    delete old;
    return nullptr;
  }
  const double x0 = m_points[0];
  const double x1 = m_points[2 * (n - 1)];
  double lo = std::numeric_limits<double>::infinity();
  double hi = -std::numeric_limits<double>::infinity();
  for (std::size_t i = 0; i < n; ++i) {
    lo = std::min(lo, m_points[2 * i + 1]);
    hi = std::max(hi, m_points[2 * i + 1]);
  }
  if (hi - lo < 1e-12) {
    hi += 0.5;
    lo -= 0.5;
  }
  const double sx = (x1 > x0) ? (width() - 1) / (x1 - x0) : 0.0;
  const double sy = (height() - 1) / (hi - lo);

  // Minimum and maximum per pixel column keep spikes visible at any point count.
  std::vector<QPointF> vertices;
  vertices.reserve(std::min<std::size_t>(n, std::size_t(columns) * 2));
  int column = -1;
  double colMin = 0, colMax = 0, colX = 0;
  auto flush = [&]() {
    if (column < 0)
      return;
    vertices.emplace_back(colX, height() - 1 - (colMin - lo) * sy);
    if (colMax != colMin)
      vertices.emplace_back(colX, height() - 1 - (colMax - lo) * sy);
  };
  for (std::size_t i = 0; i < n; ++i) {
    const double x = (m_points[2 * i] - x0) * sx;
    const double y = m_points[2 * i + 1];
    const int c = int(x);
    if (c != column) {
      flush();
      column = c;
      colMin = colMax = y;
      colX = x;
    } else {
      colMin = std::min(colMin, y);
      colMax = std::max(colMax, y);
    }
  }
  flush();

  if (lo != m_minY || hi != m_maxY || x0 != m_minX || x1 != m_maxX) {
    m_minY = lo;
    m_maxY = hi;
    m_minX = x0;
    m_maxX = x1;
    QMetaObject::invokeMethod(this, &PlotItem::publishRange, Qt::QueuedConnection);
  }
  if (software)
    return softwareLine(window(), old, vertices, size(), m_color);

  if (!node) {
    node = new QSGGeometryNode();
    auto* geometry = new QSGGeometry(QSGGeometry::defaultAttributes_Point2D(), 0);
    geometry->setDrawingMode(QSGGeometry::DrawLineStrip);
    geometry->setLineWidth(1.5f);
    node->setGeometry(geometry);
    node->setFlag(QSGNode::OwnsGeometry);
    node->setMaterial(new QSGFlatColorMaterial());
    node->setFlag(QSGNode::OwnsMaterial);
  }
  static_cast<QSGFlatColorMaterial*>(node->material())->setColor(m_color);
  QSGGeometry* geometry = node->geometry();
  geometry->allocate(int(vertices.size()));
  QSGGeometry::Point2D* out = geometry->vertexDataAsPoint2D();
  for (std::size_t i = 0; i < vertices.size(); ++i)
    out[i].set(float(vertices[i].x()), float(vertices[i].y()));
  node->markDirty(QSGNode::DirtyGeometry | QSGNode::DirtyMaterial);
  return node;
}
