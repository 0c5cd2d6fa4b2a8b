// test_support.hpp: helpers shared by the test files.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include <catch2/catch.hpp>

#include <weft/error.hpp>
#include <weft/executor.hpp>
#include <weft/this_fiber.hpp>

namespace test {

inline constexpr int kDeadline = static_cast<int>(weft::errc::deadline_exceeded);
inline constexpr int kCancelled = static_cast<int>(weft::errc::cancelled);

// on_each() runs body on a pool fiber of 1, 2 and 4 workers, and on a plain thread (a Catch
// GENERATE: the test case runs once per kind).
template <class F>
void on_each(F body) {
  const unsigned threads = GENERATE(0u, 1u, 2u, 4u);
  CAPTURE(threads);
  if (threads == 0) {
    body();
  } else {
    weft::executor ex(threads);
    ex.run(body);
  }
}

// counted_value counts live instances, to check when values are destroyed.
struct counted_value {
  static inline std::atomic<int> alive{0};
  int value;
  explicit counted_value(int v = 0) : value(v) { ++alive; }
  counted_value(const counted_value& o) : value(o.value) { ++alive; }
  counted_value(counted_value&& o) noexcept : value(o.value) { ++alive; }
  counted_value& operator=(const counted_value&) = default;
  ~counted_value() { --alive; }
};

// code_of() runs f and returns the errc of the weft::error it throws (or 0 if none).
template <class F>
int code_of(F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const weft::error& e) {
    return e.code().value();
  }
  return 0;
}

template <class F>
std::string message_of(F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const weft::error& e) {
    return e.what();
  }
  return {};
}

// gate is a one-shot latch for plain threads (blocking threads block on it, on purpose).
class gate {
 public:
  void open() {
    std::lock_guard<std::mutex> g(m_);
    open_ = true;
    cv_.notify_all();
  }
  // wait() returns whether the gate opened within the (generous) limit.
  bool wait(std::chrono::seconds limit = std::chrono::seconds(30)) {
    std::unique_lock<std::mutex> lk(m_);
    return cv_.wait_for(lk, limit, [this] { return open_; });
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  bool open_ = false;
};

// eventually() polls cond until it holds or `limit` passes (then it is false): for states
// that other threads reach in their own time.
template <class Cond>
bool eventually(Cond cond, std::chrono::seconds limit = std::chrono::seconds(30)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// parked_on() is true when at least `count` fibers of ex are suspended waiting on `label`
// (fiber_info::waiting_on, e.g. "channel jobs: recv").
inline bool parked_on(const weft::executor& ex, const std::string& label, int count = 1) {
  int n = 0;
  for (const weft::fiber_info& f : ex.fibers()) {
    n += f.state == weft::fiber_state::suspended && f.waiting_on == label;
  }
  return n >= count;
}

// eventually_here() is eventually() for callers that may be pool fibers: it sleeps with weft's
// sleep, so the fibers it waits for can run on the caller's worker meanwhile.
template <class Cond>
bool eventually_here(Cond cond, std::chrono::seconds limit = std::chrono::seconds(30)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > end) return false;
    weft::this_fiber::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace test
