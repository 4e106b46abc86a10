// Minimal leveled logging to stderr ("vidkv: warning: ..."), and a progress reporter that draws a bar on a
// terminal and prints plain lines otherwise (CI logs, pipes).
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

#include "vidkv/core/error.h"

namespace vidkv {

enum class LogLevel { debug = 0, info = 1, warning = 2, error = 3, quiet = 4 };
void set_log_level(LogLevel level);
LogLevel log_level();
void log_message(LogLevel level, const std::string& message);

#define VIDKV_LOG(level, ...) \
  do { if (static_cast<int>(level) >= static_cast<int>(::vidkv::log_level())) ::vidkv::log_message(level, ::vidkv::detail::concat(__VA_ARGS__)); } while (0)
#define VIDKV_INFO(...) VIDKV_LOG(::vidkv::LogLevel::info, __VA_ARGS__)
#define VIDKV_WARN(...) VIDKV_LOG(::vidkv::LogLevel::warning, __VA_ARGS__)
#define VIDKV_DEBUG(...) VIDKV_LOG(::vidkv::LogLevel::debug, __VA_ARGS__)

// Thread-safe progress over `total` units of work. On a terminal (stderr is a tty) it redraws one bar line at most
// 10 times a second; otherwise it prints a plain line at every 10% step. Silent at LogLevel::quiet or above warning.
class ProgressReporter {
 public:
  ProgressReporter(std::string label, std::int64_t total);
  ~ProgressReporter();
  void advance(std::int64_t units = 1, const std::string& detail = "");
  void finish();

 private:
  void draw(bool final_line);
  std::string label_;
  std::int64_t total_;
  std::int64_t done_ = 0;
  int last_decile_ = -1;
  bool tty_;
  bool finished_ = false;
  std::string detail_;
  std::chrono::steady_clock::time_point start_, last_draw_;
  std::mutex mutex_;
};

}  // namespace vidkv
