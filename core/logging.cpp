#include "vidkv/core/logging.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>

namespace vidkv {

namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::info)};
std::mutex g_stderr_mutex;
}  // namespace

void set_log_level(LogLevel level) { g_level = static_cast<int>(level); }
LogLevel log_level() { return static_cast<LogLevel>(g_level.load()); }

void log_message(LogLevel level, const std::string& message) {
  static const char* names[] = {"debug: ", "", "warning: ", "error: ", ""};
  std::lock_guard<std::mutex> lock(g_stderr_mutex);
  std::fprintf(stderr, "vidkv: %s%s\n", names[static_cast<int>(level)], message.c_str());
}

ProgressReporter::ProgressReporter(std::string label, std::int64_t total)
    : label_(std::move(label)), total_(total), tty_(isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

ProgressReporter::~ProgressReporter() { finish(); }

void ProgressReporter::advance(std::int64_t units, const std::string& detail) {
  std::lock_guard<std::mutex> lock(mutex_);
  done_ += units;
  if (!detail.empty()) detail_ = detail;
  draw(false);
}

void ProgressReporter::finish() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (finished_) return;
  finished_ = true;
  if (total_ > 0 && log_level() <= LogLevel::info && tty_) draw(true);
}

void ProgressReporter::draw(bool final_line) {
  if (log_level() > LogLevel::info || total_ <= 0) return;
  const auto now = std::chrono::steady_clock::now();
  const double seconds = std::chrono::duration<double>(now - start_).count();
  const double frac = std::min(1.0, static_cast<double>(done_) / static_cast<double>(total_));
  std::lock_guard<std::mutex> lock(g_stderr_mutex);
  if (tty_) {
    if (!final_line && done_ < total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    const int width = 30;
    const int filled = static_cast<int>(frac * width);
    std::string bar(static_cast<std::size_t>(filled), '#');
    bar.resize(width, '.');
    std::fprintf(stderr, "\r%s [%s] %lld/%lld %5.1fs %s\033[K", label_.c_str(), bar.c_str(), static_cast<long long>(done_),
                 static_cast<long long>(total_), seconds, detail_.c_str());
    if (final_line) std::fprintf(stderr, "\n");
  } else {
    // A line each time another tenth is done, with the exact percentage (1/8 is 12%, not "10%").
    const int decile = static_cast<int>(frac * 10);
    if (decile == last_decile_) return;
    last_decile_ = decile;
    std::fprintf(stderr, "%s: %lld/%lld (%d%%) %.1fs %s\n", label_.c_str(), static_cast<long long>(done_),
                 static_cast<long long>(total_), static_cast<int>(frac * 100), seconds, detail_.c_str());
  }
  std::fflush(stderr);
}

}  // namespace vidkv
