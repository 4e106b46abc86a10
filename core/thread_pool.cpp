#include "vidkv/core/thread_pool.h"

#include <atomic>
#include <exception>
#include <memory>

namespace vidkv {

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::worker_loop() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
  }
}

void ThreadPool::parallel_for(std::int64_t n, const std::function<void(std::int64_t)>& fn) {
  if (n <= 0) return;
  // Shared state: a helper that is dequeued after the loop has finished finds no work and touches only this
  // state, which it co-owns, so the caller never waits for queued helpers (and nested calls cannot deadlock:
  // the caller alone can finish every item).
  struct State {
    std::function<void(std::int64_t)> fn;
    std::int64_t n = 0;
    std::atomic<std::int64_t> next{0};
    std::atomic<std::int64_t> done{0};
    std::mutex mutex;
    std::condition_variable finished;
    std::exception_ptr error;
  };
  auto state = std::make_shared<State>();
  state->fn = fn;
  state->n = n;
  auto run = [state] {
    for (;;) {
      const std::int64_t i = state->next.fetch_add(1);
      if (i >= state->n) return;
      bool failed;
      {
        std::lock_guard<std::mutex> lock(state->mutex);
        failed = static_cast<bool>(state->error);
      }
      if (!failed) {
        try {
          state->fn(i);
        } catch (...) {
          std::lock_guard<std::mutex> lock(state->mutex);
          if (!state->error) state->error = std::current_exception();
        }
      }
      if (state->done.fetch_add(1) + 1 == state->n) {
        std::lock_guard<std::mutex> lock(state->mutex);
        state->finished.notify_all();
      }
    }
  };
  const std::int64_t helpers = std::min<std::int64_t>(n - 1, size());
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (std::int64_t h = 0; h < helpers; ++h) queue_.emplace_back(run);
  }
  cv_.notify_all();
  run();  // the caller works too
  std::unique_lock<std::mutex> lock(state->mutex);
  state->finished.wait(lock, [&] { return state->done.load() == n; });
  if (state->error) std::rethrow_exception(state->error);
}

}  // namespace vidkv
