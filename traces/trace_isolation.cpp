// run_isolated: untrusted HDF5 reads in a fork()ed child that reports back through a pipe (see trace_isolation.h).
#include "vidkv/traces/trace_isolation.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <new>

#include "vidkv/core/error.h"
#include "vidkv/traces/trace_read_policy.h"

#if defined(__SANITIZE_ADDRESS__)
#define VIDKV_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define VIDKV_UNDER_ASAN 1
#endif
#endif

// libFuzzer and the sanitizers install a death callback that writes a crash report for the *parent's* input;
// a child that dies inside HDF5 must not trigger it (weak: absent in ordinary builds).
extern "C" void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

namespace vidkv::trace_isolation {

namespace {

int g_child_fd = -1;        // the pipe's write end, in a child only
std::string g_last_object;  // in a child: the last object reported

// Frames on the pipe: one tag byte, a 4-byte little-endian length, the payload.
enum Tag : char { kProgress = 'P', kResult = 'R', kError = 'E' };

bool write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

void send_frame(char tag, const std::string& payload) {
  char header[5];
  header[0] = tag;
  const std::uint32_t n = static_cast<std::uint32_t>(payload.size());
  std::memcpy(header + 1, &n, 4);
  if (!write_all(g_child_fd, header, 5) || !write_all(g_child_fd, payload.data(), payload.size())) ::_exit(121);
}

// Error kinds carried across the pipe, so that the parent rethrows the child's type.
char error_kind(const Error& e) {
  if (dynamic_cast<const IoError*>(&e)) return 'i';
  if (dynamic_cast<const ShapeError*>(&e)) return 's';
  if (dynamic_cast<const ConfigError*>(&e)) return 'c';
  if (dynamic_cast<const NotSupportedError*>(&e)) return 'n';
  return 'e';
}

[[noreturn]] void rethrow(char kind, const std::string& message) {
  switch (kind) {
    case 'i': throw IoError(message);
    case 's': throw ShapeError(message);
    case 'c': throw ConfigError(message);
    case 'n': throw NotSupportedError(message);
    default: throw Error(message);
  }
}

#ifndef VIDKV_UNDER_ASAN
// Mapped address space of this process now (bytes), from /proc/self/statm.
std::uint64_t address_space_bytes() {
  std::ifstream in("/proc/self/statm");
  std::uint64_t pages = 0;
  in >> pages;
  return pages * static_cast<std::uint64_t>(::sysconf(_SC_PAGE_SIZE));
}
#endif

[[noreturn]] void child_main(const std::string& path, const std::function<std::string()>& work, int fd,
                             std::uint64_t budget) {
  g_child_fd = fd;
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(nullptr);
  for (int sig : {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL}) ::signal(sig, SIG_DFL);
#ifndef VIDKV_UNDER_ASAN
  // Bound what HDF5 may allocate: the budget plus 1 GiB over what the process maps already (AddressSanitizer
  // reserves terabytes of shadow memory, so the limit is left off under it).
  const std::uint64_t limit = address_space_bytes() + budget + (std::uint64_t{1} << 30);
  const rlimit rl{limit, limit};
  ::setrlimit(RLIMIT_AS, &rl);
#else
  (void)budget;
#endif
  try {
    send_frame(kResult, work());
  } catch (const Error& e) {
    send_frame(kError, std::string(1, error_kind(e)) + e.what());
  } catch (const std::bad_alloc&) {
    send_frame(kError, "i" + path + ": out of memory" +
                           (g_last_object.empty() ? std::string() : " while reading " + g_last_object) +
                           " (a size in the file is corrupt, or the memory budget is too small: VIDKV_MEMORY_BUDGET_MB)");
  } catch (const std::exception& e) {
    send_frame(kError, std::string("e") + e.what());
  }
  ::_exit(0);  // no atexit handlers, no flushing of the parent's stdio buffers a second time
}

std::string signal_name(int sig) {
  const char* name = ::sigabbrev_np(sig);
  return name ? std::string("SIG") + name : "signal " + std::to_string(sig);
}

struct Identity {
  std::string key;
  bool ok = false;
};

Identity identity_of(const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) return {};
  char buf[160];
  std::snprintf(buf, sizeof buf, "%llu:%llu:%lld:%lld.%09ld", static_cast<unsigned long long>(st.st_dev),
                static_cast<unsigned long long>(st.st_ino), static_cast<long long>(st.st_size),
                static_cast<long long>(st.st_mtim.tv_sec), st.st_mtim.tv_nsec);
  return {buf, true};
}

std::mutex& cache_mutex() {
  static std::mutex m;
  return m;
}
std::map<std::string, int>& cache() {
  static std::map<std::string, int> c;
  return c;
}

}  // namespace

bool in_child() { return g_child_fd >= 0; }

void report_progress(const std::string& file, const std::string& object) {
  if (g_child_fd < 0) return;
  (void)file;
  if (object == g_last_object) {
    send_frame(kProgress, std::string());  // the same object again: a heartbeat only
    return;
  }
  g_last_object = object;
  send_frame(kProgress, object);
}

std::string run_isolated(const std::string& path, const std::string& what, const std::function<std::string()>& work) {
  const TraceReadPolicy policy = trace_read_policy();
  if (!policy.isolate || g_child_fd >= 0) return work();
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) VIDKV_THROW(IoError, path, ": cannot create a pipe for ", what, ": ", std::strerror(errno));
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    VIDKV_THROW(IoError, path, ": cannot fork a process for ", what, ": ", std::strerror(errno));
  }
  if (pid == 0) {
    ::close(fds[0]);
    child_main(path, work, fds[1], static_cast<std::uint64_t>(policy.memory_budget_bytes));
  }
  ::close(fds[1]);
  const int fd = fds[0];
  std::string buffer, last_object, result, error;
  char error_type = 0;
  bool have_result = false, stalled = false;
  const int stall_ms = static_cast<int>(policy.stall_seconds * 1000);
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, stall_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) {
      stalled = true;
      ::kill(pid, SIGKILL);
      break;
    }
    char chunk[65536];
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buffer.append(chunk, static_cast<std::size_t>(n));
    while (buffer.size() >= 5) {
      std::uint32_t len = 0;
      std::memcpy(&len, buffer.data() + 1, 4);
      if (buffer.size() < 5 + std::size_t{len}) break;
      const char tag = buffer[0];
      std::string payload = buffer.substr(5, len);
      buffer.erase(0, 5 + std::size_t{len});
      if (tag == kProgress) {
        if (!payload.empty()) last_object = std::move(payload);
      } else if (tag == kResult) {
        result = std::move(payload);
        have_result = true;
      } else if (tag == kError && !payload.empty()) {
        error_type = payload[0];
        error = payload.substr(1);
      }
    }
  }
  ::close(fd);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  const std::string at = last_object.empty() ? "" : " while reading " + last_object;
  if (stalled)
    VIDKV_THROW(IoError, path, ": HDF5 made no progress for ", policy.stall_seconds, " s", at, " (", what,
                "); the file is corrupt (a loop in its structure?) and was not read further. Re-create or re-download "
                "it ($VIDKV_TRACE_STALL_SECONDS raises the limit for a very slow disk)");
  if (error_type) rethrow(error_type, error);
  if (have_result && WIFEXITED(status) && WEXITSTATUS(status) == 0) return result;
  if (WIFSIGNALED(status))
    VIDKV_THROW(IoError, path, ": the HDF5 library crashed (", signal_name(WTERMSIG(status)), ")", at, " (", what,
                "); the file is corrupt. It was read in a separate process, so nothing else was affected; re-create or "
                "re-download it");
  VIDKV_THROW(IoError, path, ": the process reading it ended with status ", WIFEXITED(status) ? WEXITSTATUS(status) : -1,
              " and no result", at, " (", what, "; a crash inside HDF5, or it ran past the memory budget); the file is corrupt");
}

bool already_checked(const std::string& path, int level) {
  if (in_child()) return true;  // the child is the check
  const Identity id = identity_of(path);
  if (!id.ok) return false;
  std::lock_guard<std::mutex> lock(cache_mutex());
  auto it = cache().find(id.key);
  return it != cache().end() && it->second >= level;
}

void mark_checked(const std::string& path, int level) {
  if (in_child()) return;
  const Identity id = identity_of(path);
  if (!id.ok) return;
  std::lock_guard<std::mutex> lock(cache_mutex());
  int& l = cache()[id.key];
  l = std::max(l, level);
}

}  // namespace vidkv::trace_isolation
