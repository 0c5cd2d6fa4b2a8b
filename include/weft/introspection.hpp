// weft/introspection.hpp: what executor::stats(), executor::fibers() and executor::dump()
// report about a running pool.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace weft {

// executor_stats is a cheap snapshot of an executor's counters (executor::stats()). Each
// field is read on its own while the pool runs: they are consistent with each other only once
// it is idle.
struct executor_stats {
  unsigned threads = 0;           // worker threads
  std::size_t live_fibers = 0;    // spawned and not finished
  std::size_t ready_fibers = 0;   // queued to run right now
  std::uint64_t spawned = 0;      // fibers started since the executor was made
  std::uint64_t steals = 0;       // times a worker took a fiber from another worker's queue
  unsigned blocking_threads = 0;  // threads of the offload() pool alive now
  unsigned blocking_busy = 0;     // of which running a call
  std::size_t stacks = 0;         // fiber stacks mapped (in use, or pooled for reuse)
  std::uint64_t sleeps = 0;       // times a worker found no work and went to sleep
  std::size_t io_waiting = 0;     // fibers waiting on I/O now (use_fiber; not grpc::call)
  std::size_t stack_bytes = 0;    // address space of the stacks mapped (resident: less)
};

// worker_stats is one worker thread's counters (executor::workers()): what explains how
// work spreads over the pool.
struct worker_stats {
  unsigned index = 0;            // 0 .. threads-1
  std::uint64_t spawned = 0;     // fibers started on this worker
  std::uint64_t steals = 0;      // fibers it took from another worker's queue
  std::uint64_t sleeps = 0;      // times it found no work and went to sleep (or into the reactor)
  std::size_t ready_fibers = 0;  // in its queue now
};

// fiber_state is what a fiber is doing when a listing sees it.
enum class fiber_state {
  running,    // on a worker thread now
  ready,      // queued to run (not started yet, woken, or yielded)
  suspended,  // waiting: on a task, a group, a sleep, a lock, I/O, an offload()ed call
};

// to_string() is "running", "ready" or "suspended".
std::string_view to_string(fiber_state s) noexcept;

// fiber_info describes one live fiber (executor::fibers()).
struct fiber_info {
  std::uint64_t id = 0;      // unique in its executor, > 0; ids are never reused
  std::uint64_t parent = 0;  // id of the fiber of this executor that spawned it, 0 if none
                             // (submitted from outside the pool); it may have ended since
  fiber_state state = fiber_state::ready;
  std::chrono::steady_clock::duration age{};  // since spawn (to a few milliseconds)
  // name -> value of each bound context_var, in the order the variables were defined; the
  // value printed with operator<< where the type has one, else "<unprintable>".
  std::vector<std::pair<std::string, std::string>> context;
  // deadline is the earliest deadline the fiber is under (weft/deadline.hpp), max() for none;
  // cancelled is true once its cancellation was requested or that deadline passed.
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  bool cancelled = false;
  // context_known is false for a fiber that kept running on another worker all through the
  // listing: its context cannot be read without stopping it, so `context` is empty (and
  // deadline and cancelled say nothing).
  bool context_known = true;
  // waiting_on is empty unless the fiber is suspended; then what it waits for, naming the
  // object: "channel jobs: recv", "select (3 cases)", "mutex accounts: lock", "task: get",
  // "sleep", "I/O", "offload", ...
  std::string waiting_on;
};

}  // namespace weft
