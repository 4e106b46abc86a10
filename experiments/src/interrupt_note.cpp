#include "vidkv/experiments/src/interrupt_note.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace vidkv {

namespace {

char g_message[2048];
volatile std::sig_atomic_t g_length = 0;

extern "C" void write_note_and_reraise(int sig) {
  if (g_length > 0) {
    const ssize_t written = ::write(STDERR_FILENO, g_message, static_cast<std::size_t>(g_length));
    (void)written;  // nothing to do about a failed write in a signal handler
  }
  std::raise(sig);  // SA_RESETHAND restored the default action on entry: end as the signal would have ended us
}

}  // namespace

InterruptNote::InterruptNote(const std::string& message) {
  const std::size_t n = std::min(message.size(), sizeof g_message);
  std::memcpy(g_message, message.data(), n);
  g_length = static_cast<std::sig_atomic_t>(n);
  struct sigaction a {};
  a.sa_handler = write_note_and_reraise;
  sigemptyset(&a.sa_mask);
  a.sa_flags = SA_RESETHAND;
  sigaction(SIGINT, &a, &previous_int_);
  sigaction(SIGTERM, &a, &previous_term_);
}

InterruptNote::~InterruptNote() {
  sigaction(SIGINT, &previous_int_, nullptr);
  sigaction(SIGTERM, &previous_term_, nullptr);
  g_length = 0;
}

}  // namespace vidkv
