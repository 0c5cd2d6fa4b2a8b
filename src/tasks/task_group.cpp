// task_group.cpp: the shared state of a task group and its children.
#include <weft/task_group.hpp>

#include "sched/cancel_scope.hpp"
#include "sched/pool.hpp"
#include "sched/waiting.hpp"

namespace weft {
namespace detail {

class task_group_state {
 public:
  explicit task_group_state(cancel_scope* parent) : scope(make_scope(parent)) {}
  ~task_group_state() { detail::release(scope); }

  void retain() noexcept { refs.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  std::atomic<unsigned> refs{1};
  spinlock lock;
  std::size_t pending = 0;   // children spawned and not finished (guarded by lock)
  std::exception_ptr first;  // the exception that cancelled the group (guarded by lock)
  waiter* waiters = nullptr;
  cancel_scope* scope;
};

namespace {

// caused_by_cancel() is true for the errc::cancelled a child raises because its group was
// cancelled: the group absorbs those.
bool caused_by_cancel(const std::exception_ptr& e, const cancel_scope* scope) {
  return is_cancelled(scope) && error_code_of(e) == errc::cancelled;
}

// out_of_time() is true for a failure that only says the group's work was cut short by the
// group's own deadline, once that passed. Nobody needs to hear of it from ~task_group: the
// group's creator is under the same deadline and got (or will get) deadline_exceeded itself.
bool out_of_time(const std::exception_ptr& e, const cancel_scope* scope) {
  return scope->deadline != never && now_ticks() >= scope->deadline && is_cancellation(e);
}

}  // namespace

void group_child_failed(task_group_state* g, std::exception_ptr e) noexcept {
  if (caused_by_cancel(e, g->scope)) return;
  {
    std::lock_guard<spinlock> lk(g->lock);
    if (g->first) return;
    g->first = std::move(e);
  }
  request_cancel(g->scope);
}

void group_child_done(task_group_state* g) noexcept {
  {
    std::lock_guard<spinlock> lk(g->lock);
    if (--g->pending == 0) wake_all(g->waiters);
  }
  g->release();
}

}  // namespace detail

namespace {

executor& current_or_throw() {
  executor* ex = executor::current();
  if (ex == nullptr) {
    throw error(errc::not_in_executor,
                "weft: task_group() made outside an executor (use task_group(executor&))");
  }
  return *ex;
}

detail::cancel_scope* caller_scope() noexcept {
  const detail::fiber_state* f = detail::tl_fiber;
  return f != nullptr ? f->scope : nullptr;
}

}  // namespace

task_group::task_group() : task_group(current_or_throw()) {}

task_group::task_group(executor& ex)
    // Refused up front: the destructor waits for the children and cannot throw.
    : pool_((detail::refuse_wait_on_worker("task_group"), ex.pool_.get())),
      state_(new detail::task_group_state(caller_scope())),
      uncaught_at_start_(std::uncaught_exceptions()) {}

namespace {
const detail::wait_label group_label{"task_group", nullptr, "wait"};
}  // namespace

task_group::~task_group() {
  if (std::uncaught_exceptions() > uncaught_at_start_) cancel();
  const detail::wait_mark mark(group_label);
  detail::block(
      state_->lock, state_->waiters, [this] { return state_->pending == 0; }, nullptr, false);
  if (state_->first && !detail::out_of_time(state_->first, state_->scope)) {
    report_unhandled(*pool_, std::exchange(state_->first, nullptr));
  }
  state_->release();
}

void task_group::submit(detail::job* j) {
  {
    std::lock_guard<detail::spinlock> lk(state_->lock);
    ++state_->pending;
  }
  state_->retain();
  try {
    pool_->submit(j, state_->scope);
  } catch (...) {
    detail::group_child_done(state_);
    throw;
  }
}

void task_group::wait() {
  const detail::wait_mark mark(group_label);
  detail::block(
      state_->lock, state_->waiters, [this] { return state_->pending == 0; }, nullptr, true);
  std::exception_ptr e;
  {
    std::lock_guard<detail::spinlock> lk(state_->lock);
    e = std::exchange(state_->first, nullptr);
  }
  if (e) std::rethrow_exception(e);
}

void task_group::cancel() noexcept {
  detail::request_cancel(state_->scope);
}

}  // namespace weft
