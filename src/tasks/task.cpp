// task.cpp: waiting on a spawned fiber and publishing its outcome.
#include <weft/task.hpp>

#include "sched/cancel_scope.hpp"
#include "sched/pool.hpp"
#include "sched/waiting.hpp"

namespace weft::detail {

void throw_invalid_task() {
  throw error(errc::invalid_task,
              "weft: task has no fiber (default-constructed, moved-from, or get() was called)");
}

namespace {
const wait_label task_label{"task", nullptr, "get"};
}  // namespace

void task_base::wait() {
  // A finished task needs no waiting, so its get() works anywhere (after ready(), say).
  if (!finished.load(std::memory_order_acquire)) refuse_wait_on_worker("task::get()/wait()");
  const wait_mark mark(task_label);
  block(
      lock, waiters, [this] { return finished.load(std::memory_order_relaxed); }, nullptr, true);
}

bool task_base::wait_until(clock::time_point deadline) {
  if (!finished.load(std::memory_order_acquire)) {
    refuse_wait_on_worker("task::wait_for()/wait_until()");
  }
  if (deadline == clock::time_point::max()) {
    wait();
    return true;
  }
  const wait_mark mark(task_label);
  return block(
      lock, waiters, [this] { return finished.load(std::memory_order_relaxed); }, &deadline, true);
}

void task_base::complete(pool& owner) noexcept {
  if (failure) {
    unhandled = owner.unhandled;
    unhandled->refs.fetch_add(1, std::memory_order_relaxed);
  }
  bool report;
  {
    std::lock_guard<spinlock> g(lock);
    finished.store(true, std::memory_order_release);
    wake_all(waiters);
    report = handle_dropped && failure && !retrieved && !is_cancellation(failure);
  }
  if (report) unhandled->report(failure);
  release();
}

void task_base::drop_handle() noexcept {
  bool report;
  {
    std::lock_guard<spinlock> g(lock);
    handle_dropped = true;
    report = finished.load(std::memory_order_relaxed) && failure && !retrieved &&
             !is_cancellation(failure);
  }
  if (report) unhandled->report(failure);
  release();
}

void task_base::rethrow_failure() {
  std::exception_ptr e;
  {
    std::lock_guard<spinlock> g(lock);
    if (!failure) return;
    retrieved = true;
    // Moved out: the exception then dies on the getter's thread, where it was caught. Left in
    // the task, its last reference could go with the task on the fiber's worker, through
    // libstdc++'s reference count that ThreadSanitizer does not see -- a reported race between
    // the catcher's reads and that free (deadline.test under TSan).
    e = std::move(failure);
  }
  std::rethrow_exception(std::move(e));
}

task_base::~task_base() {
  if (unhandled != nullptr) unhandled->release();
}

}  // namespace weft::detail
