#pragma once

#include <QtCore/QPointer>
#include <QtGui/QColor>
#include <QtQml/QQmlEngine>
#include <QtQuick/QQuickItem>

#include <vector>

// Line plot of a RunPlot's series as one scene-graph geometry node. Long series are reduced to
// a minimum and maximum per pixel column, so 10k+ points draw as fast as a few hundred.
class PlotItem : public QQuickItem
{
  Q_OBJECT
  QML_ELEMENT
  Q_PROPERTY(QObject* plot READ plot WRITE setPlot NOTIFY plotChanged)
  Q_PROPERTY(QColor color READ color WRITE setColor NOTIFY colorChanged)
  Q_PROPERTY(double minY READ minY NOTIFY rangeChanged)
  Q_PROPERTY(double maxY READ maxY NOTIFY rangeChanged)

public:
  explicit PlotItem(QQuickItem* parent = nullptr);

  QObject* plot() const;
  void setPlot(QObject* plot);
  QColor color() const;
  void setColor(const QColor& color);
  double minY() const;
  double maxY() const;

Q_SIGNALS:
  void plotChanged();
  void colorChanged();
  void rangeChanged();

protected:
  QSGNode* updatePaintNode(QSGNode* old, UpdatePaintNodeData* data) override;

private:
  void publishRange();

  QPointer<QObject> m_plot;
  QColor m_color = QColor(QStringLiteral("#58a6ff"));
  std::vector<double> m_points;
  double m_minY = 0.0;
  double m_maxY = 0.0;
};
