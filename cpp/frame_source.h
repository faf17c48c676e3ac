#pragma once

#include <cstddef>
#include <cstdint>

#include <QtCore/QObject>
#include <QtQml/QQmlEngine>

#include "rust/cxx.h"

// What a FrameItem paints: a Rust QObject that derives from this class (the live view, the
// replay view, and any later source) and overrides its four methods. The item knows nothing
// else about its source, so a new source is a new Rust type and no C++ edit.
class FrameSource : public QObject
{
  Q_OBJECT
  QML_ANONYMOUS

public:
  explicit FrameSource(QObject* parent = nullptr)
    : QObject(parent)
  {
  }
  ~FrameSource() override = default;

  // Render thread, GUI thread blocked: size and pixel format (fast-lane format codes: 1 RGB8,
  // 2 RGBA8, 3 BGRA8) of the frame to allocate for; width 0 when there is none.
  virtual void frameShape(std::uint32_t& width, std::uint32_t& height, std::uint32_t& format) const = 0;
  // Render thread, GUI thread blocked: copies the chosen frame into `dst` (rows `stride` bytes
  // apart); false when there is nothing new or the frame does not fit.
  virtual bool grabFrame(rust::Slice<std::uint8_t> dst, std::size_t stride) const = 0;
  // Render thread, after the buffer swap that showed the last grabbed frame (sources that
  // measure presentation override it).
  virtual void framePresented() const {}
  // GUI thread, polish phase before each sync: choose the frame and publish its HUD values
  // (sources whose frame is chosen elsewhere leave it).
  virtual void tick() {}

Q_SIGNALS:
  // A new frame (or a change of state) is there: render.
  void frameAvailable();
};
