// Registry of PATH.partial files removed on SIGINT / SIGTERM / SIGHUP (see partial_files.h).
#include "vidkv/traces/partial_files.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>

namespace vidkv {

namespace {

constexpr int kSlots = 64;
constexpr std::size_t kPathBytes = 4096;
// Written under the mutex, read by the signal handler: a slot's path is complete before `used` turns true.
char g_paths[kSlots][kPathBytes];
std::atomic<bool> g_used[kSlots];
struct sigaction g_previous[3];
constexpr int kSignals[3] = {SIGINT, SIGTERM, SIGHUP};

std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}

void on_signal(int sig) {
  for (int i = 0; i < kSlots; ++i)
    if (g_used[i].load()) ::unlink(g_paths[i]);  // async-signal-safe
  for (int k = 0; k < 3; ++k) {
    if (kSignals[k] != sig) continue;
    const struct sigaction& prev = g_previous[k];
    if (!(prev.sa_flags & SA_SIGINFO) && prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN) {
      prev.sa_handler(sig);
      return;
    }
    if (!(prev.sa_flags & SA_SIGINFO) && prev.sa_handler == SIG_IGN) return;
  }
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

// (Re)installs the handler on each signal where it is not the current one: another component (an embedded
// Python, a test framework) may have installed its own since; that one becomes the handler called after ours.
void install() {
  for (int k = 0; k < 3; ++k) {
    struct sigaction current{};
    ::sigaction(kSignals[k], nullptr, &current);
    if (!(current.sa_flags & SA_SIGINFO) && current.sa_handler == on_signal) continue;
    struct sigaction sa{};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    ::sigaction(kSignals[k], &sa, &g_previous[k]);
  }
}

}  // namespace

void register_partial_file(const std::string& partial) {
  if (partial.size() + 1 > kPathBytes) return;
  std::lock_guard<std::mutex> lock(registry_mutex());
  install();
  for (int i = 0; i < kSlots; ++i) {
    if (g_used[i].load()) continue;
    std::memcpy(g_paths[i], partial.c_str(), partial.size() + 1);
    g_used[i].store(true);
    return;
  }
}

void unregister_partial_file(const std::string& partial) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  for (int i = 0; i < kSlots; ++i)
    if (g_used[i].load() && partial == g_paths[i]) {
      g_used[i].store(false);
      return;
    }
}

}  // namespace vidkv
