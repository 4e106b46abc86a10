// What `vidkv run` says when it is interrupted (Ctrl-C, SIGTERM from a job scheduler) while it computes cells: the
// folder that keeps the finished cells and how to continue. An InterruptNote in scope installs handlers for SIGINT
// and SIGTERM that write its message to stderr (write(2): async-signal-safe, the message is formatted beforehand)
// and then end the process by the same signal with the default action, as it would have ended without them (exit
// status 128 + signal for a shell; the finished cells are safe: each is written atomically). The handlers before it
// are restored when it goes out of scope. One at a time per process.
#pragma once

#include <csignal>
#include <string>

namespace vidkv {

class InterruptNote {
 public:
  explicit InterruptNote(const std::string& message);
  ~InterruptNote();
  InterruptNote(const InterruptNote&) = delete;
  InterruptNote& operator=(const InterruptNote&) = delete;

 private:
  struct sigaction previous_int_ {};
  struct sigaction previous_term_ {};
};

}  // namespace vidkv
