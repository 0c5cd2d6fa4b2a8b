// stuck_worker.hpp: the scenario "a fiber is woken while the worker it parked on is stuck",
// shared by the tests of each kind of wait (a task, an offload()ed call, I/O).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

#include <weft/weft.hpp>

#include "test_support.hpp"

namespace test {

// resumes_past_a_stuck_worker() runs, on a 2-worker pool, a fiber that waits through
// `wait(release, spawn_spinners)`: wait() must arrange for someone else -- not the fiber's
// worker -- to call release() and end the wait, call spawn_spinners() right before it parks
// (with no suspension in between), and park. release() returns once the fiber's worker is
// stuck and the other worker is free, so the fiber must resume on the other worker.
//
// The scenario comes about every time, whatever the OS does with the threads: two spinners
// wait for each other without ever yielding, so once both run they run on different
// workers -- one of them on the worker the fiber parked on (it stays stuck until the fiber
// has run again), the other on the other worker (it then returns). (An earlier version
// spawned one spinner and hoped that the fiber's own worker would run it before the other
// worker stole it; on a busy machine the other one often won 200 times in a row.)
//
// release() may be called on a pool fiber, where it sleeps between looks (so its worker can
// run a spinner), or on a plain thread. Returns whether the spinner stayed stuck on the
// fiber's worker until the fiber had resumed; CHECKs that the spinners met.
template <class Wait>
bool resumes_past_a_stuck_worker(weft::executor& ex, Wait wait) {
  REQUIRE(ex.thread_count() == 2);
  return ex.run([&] {
    std::thread::id here;
    std::atomic<int> arrived{0};
    std::atomic<bool> met{true};
    std::atomic<bool> stuck_here{false};  // a spinner holds the waiting fiber's worker
    std::atomic<bool> other_done{false};  // the other spinner returned: that worker is free
    std::atomic<bool> resumed{false};
    std::atomic<bool> stuck_until_resumed{false};
    const std::function<void()> release = [&] {
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      while (!(stuck_here && other_done) && std::chrono::steady_clock::now() < give_up)
        weft::this_fiber::sleep_for(std::chrono::milliseconds(1));
    };
    auto spinner = [&] {
      ++arrived;
      if (!eventually([&] { return arrived.load() == 2; })) met = false;
      if (std::this_thread::get_id() != here) {
        other_done = true;
        return;
      }
      stuck_here = true;
      // Blocks the worker thread on purpose: the worker is stuck.
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      while (!resumed && std::chrono::steady_clock::now() < give_up) {
      }
      stuck_until_resumed = resumed.load();
    };
    weft::task<void> a, b;
    wait(release, [&] {
      here = std::this_thread::get_id();
      a = weft::spawn(spinner);
      b = weft::spawn(spinner);
    });
    const bool stuck_before = stuck_here && !resumed;
    resumed = true;
    a.get();
    b.get();
    CHECK(met);
    return stuck_before && stuck_until_resumed;
  });
}

}  // namespace test

namespace test {

// stuck_while() runs f() on a fiber of a 2-worker pool while the worker f parks on is stuck:
// right before f() (which must park first thing, with no suspension before), two spinners are
// spawned that meet (so they run on different workers); the one on f's worker computes --
// never yields -- until f() has returned (at most `limit`), the other returns, leaving its
// worker idle. f's exceptions go through; CHECKs that the spinners met.
template <class F>
void stuck_while(weft::executor& ex, F f,
                 std::chrono::milliseconds limit = std::chrono::milliseconds(3000)) {
  REQUIRE(ex.thread_count() == 2);
  ex.run([&] {
    const std::thread::id here = std::this_thread::get_id();
    std::atomic<int> arrived{0};
    std::atomic<bool> met{true};
    std::atomic<bool> done{false};
    auto spinner = [&] {
      ++arrived;
      if (!eventually([&] { return arrived.load() == 2; })) met = false;
      if (std::this_thread::get_id() != here) return;
      const auto give_up = std::chrono::steady_clock::now() + limit;
      while (!done && std::chrono::steady_clock::now() < give_up) {
      }
    };
    auto a = weft::spawn(spinner);
    auto b = weft::spawn(spinner);
    auto finish = [&] {
      done = true;
      a.get();
      b.get();
      CHECK(met);
    };
    try {
      f();
    } catch (...) {
      finish();
      throw;
    }
    finish();
  });
}

}  // namespace test
