#pragma once

#include <cstddef>

#include <QtCore/QObject>
#include <QtQml/QQmlEngine>

#include "rust/cxx.h"

// What a PlotItem draws: a Rust QObject that derives from this class and serves one or more
// series ("channels") of x, y points. A new source is a new Rust type and no C++ edit.
class PlotSource : public QObject
{
  Q_OBJECT
  QML_ANONYMOUS

public:
  explicit PlotSource(QObject* parent = nullptr)
    : QObject(parent)
  {
  }
  ~PlotSource() override = default;

  // Render thread: points in `channel` (0 for sources with one series).
  virtual std::size_t channelLength(std::int32_t channel) const = 0;
  // Render thread: copies the newest points of `channel` as x, y pairs into `out` (at most
  // out.size() / 2 of them); returns how many were copied.
  virtual std::size_t copyChannel(std::int32_t channel, rust::Slice<double> out) const = 0;

Q_SIGNALS:
  // Points were added or the series was replaced.
  void pointsChanged();
};
