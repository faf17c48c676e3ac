#pragma once

#include <cstdint>

namespace framelane {

struct AppOptions;

// Creates the QGuiApplication and QML engine, loads Main.qml and runs the event loop.
std::int32_t runApplication(const AppOptions& options);

} // namespace framelane
