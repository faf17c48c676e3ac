#pragma once

#include <QtCore/QPointer>
#include <QtGui/QColor>
#include <QtQml/QQmlEngine>
#include <QtQuick/QQuickItem>

#include "framelane/plot_source.h"

#include <vector>

// Line plot of one channel of a PlotSource as one scene-graph geometry node. Long series are reduced to
// a minimum and maximum per pixel column, so 10k+ points draw as fast as a few hundred.
class PlotItem : public QQuickItem
{
  Q_OBJECT
  QML_ELEMENT
  Q_PROPERTY(PlotSource* source READ source WRITE setSource NOTIFY sourceChanged)
  Q_PROPERTY(QColor color READ color WRITE setColor NOTIFY colorChanged)
  Q_PROPERTY(double minY READ minY NOTIFY rangeChanged)
  Q_PROPERTY(double maxY READ maxY NOTIFY rangeChanged)
  // Channel of the source (a ReplayView: 0 the episode's rewards, 1 the whole run).
  Q_PROPERTY(int channel READ channel WRITE setChannel NOTIFY channelChanged)
  // Lowest and highest x of the points drawn last (for cursors laid over the plot).
  Q_PROPERTY(double minX READ minX NOTIFY rangeChanged)
  Q_PROPERTY(double maxX READ maxX NOTIFY rangeChanged)

public:
  explicit PlotItem(QQuickItem* parent = nullptr);

  PlotSource* source() const;
  void setSource(PlotSource* source);
  QColor color() const;
  void setColor(const QColor& color);
  double minY() const;
  double maxY() const;
  double minX() const;
  double maxX() const;
  int channel() const;
  void setChannel(int channel);

Q_SIGNALS:
  void sourceChanged();
  void colorChanged();
  void rangeChanged();
  void channelChanged();

protected:
  QSGNode* updatePaintNode(QSGNode* old, UpdatePaintNodeData* data) override;

private:
  void publishRange();

  QPointer<PlotSource> m_source;
  QColor m_color = QColor(QStringLiteral("#58a6ff"));
  std::vector<double> m_points;
  double m_minY = 0.0;
  double m_maxY = 0.0;
  double m_minX = 0.0;
  double m_maxX = 0.0;
  int m_channel = 0;
};
