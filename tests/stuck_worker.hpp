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
// `wait(release, spawn_spinner)`: wait() must arrange for someone else -- not the fiber's
// worker -- to call release() and end the wait, call spawn_spinner() right before it parks,
// and park. The spinner, spawned last, lands on top of the waiting fiber's worker queue and
// runs there once the fiber parks (when the other worker takes it first, the attempt is
// repeated, and so it is when the wait ended before the spinner started); it then never
// yields until the waiting fiber has run again. So the waiting fiber must resume on the
// other worker. Returns false if the scenario never came about;
// CHECKs that the spinner did not wait in vain.
template <class Wait>
bool resumes_past_a_stuck_worker(weft::executor& ex, Wait wait) {
  return ex.run([&] {
    for (int attempt = 0; attempt < 200; ++attempt) {
      const auto here = std::this_thread::get_id();
      std::atomic<int> spinner_state{0};  // 1: spins on `here`, 2: ran elsewhere
      std::atomic<bool> resumed{false};
      bool stuck_until_resumed = false;
      const std::function<void()> release = [&] {
        eventually([&] { return spinner_state.load() != 0; });
      };
      weft::task<void> spinner;
      wait(release, [&] {
        spinner = weft::spawn([&] {
          if (std::this_thread::get_id() != here) {
            spinner_state = 2;
            return;
          }
          spinner_state = 1;
          stuck_until_resumed = eventually([&] { return resumed.load(); });
        });
      });
      // The scenario holds if the spinner was already spinning when this fiber ran again.
      const bool stuck_before = spinner_state == 1;
      resumed = true;
      spinner.get();
      if (stuck_before) {
        CHECK(stuck_until_resumed);
        return true;
      }
    }
    return false;
  });
}

}  // namespace test
