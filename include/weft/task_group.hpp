// weft/task_group.hpp: structured concurrency -- a scope that owns the fibers spawned in it.
#pragma once

#include <cstddef>
#include <exception>
#include <functional>
#include <new>
#include <tuple>
#include <type_traits>
#include <utility>

#include <weft/detail/job.hpp>
#include <weft/executor.hpp>

namespace weft {

namespace detail {

class task_group_state;
void group_child_failed(task_group_state* g, std::exception_ptr e) noexcept;
void group_child_done(task_group_state* g) noexcept;

// group_child is the job of task_group::spawn: its outcome goes to the group.
template <class F, class... A>
struct group_child final : job {
  template <class G, class... B>
  explicit group_child(task_group_state* g, G&& f, B&&... b)
      : group(g), call(std::forward<G>(f), std::forward<B>(b)...) {}
  void run(pool&) noexcept override {
    try {
      call.invoke();
    } catch (...) {
      group_child_failed(group, std::current_exception());
    }
  }
  void discard_call() noexcept override { call.discard(); }
  void complete(pool&) noexcept override {
    task_group_state* g = group;
    if (on_stack) {
      this->~group_child();  // the fiber's stack memory is not ours to free
    } else {
      delete this;
    }
    group_child_done(g);
  }
  void fail(pool& owner, std::exception_ptr e) noexcept override {
    group_child_failed(group, std::move(e));
    complete(owner);
  }
  // Only the fiber knows a group child once it started, so it moves onto the fiber's stack:
  // an idle fiber then keeps nothing on the heap (a server has one per open connection).
  job* settle(void* room, std::size_t bytes) noexcept override {
    if constexpr (stored_call<F, A...>::relocatable) {
      if (sizeof(group_child) <= bytes && alignof(group_child) <= alignof(std::max_align_t)) {
        auto* moved = ::new (room) group_child(std::move(*this));
        delete this;
        return moved;
      }
    }
    return this;
  }
  task_group_state* group;
  stored_call<F, A...> call;
  bool on_stack = false;

 private:
  // The move settle() makes: context and scope were taken by the fiber already.
  group_child(group_child&& from) noexcept
      : job(), group(from.group), call(std::move(from.call)), on_stack(true) {}
};

}  // namespace detail

// task_group owns the fibers spawned through it: they never outlive it. When one of them
// throws, the group cancels the others; wait() rethrows that first exception once all have
// finished. Cancellation is inherited by everything the children spawn. Non-copyable,
// non-movable.
class task_group {
 public:
  // task_group() spawns on executor::current(); elsewhere throws errc::not_in_executor.
  // Its children can be cancelled with the group, and also by whatever cancels its creator.
  task_group();
  // task_group(ex) spawns on ex; usable from plain threads too. On a worker thread outside a
  // fiber (an Asio handler) it throws weft::error(would_deadlock): its destructor would wait
  // there (see executor::current()).
  explicit task_group(executor& ex);
  task_group(const task_group&) = delete;
  task_group& operator=(const task_group&) = delete;
  // ~task_group() waits for every child (never detaches); it does not throw, and an
  // exception that wait() did not deliver goes to executor_options::on_unhandled_exception
  // -- unless it is a child's deadline_exceeded (or cancelled) after the deadline the group
  // itself is under passed: its creator, under the same deadline, knows already.
  // When it runs because an exception leaves the group's scope, it cancels the children
  // first (like asyncio.TaskGroup and Trio), so it never waits for work nobody wants.
  ~task_group();

  // spawn() starts f(a...) on a child fiber that inherits the caller's current context.
  // Never blocks. Throws errc::executor_closed like executor::spawn.
  template <class F, class... A>
  void spawn(F&& f, A&&... a) {
    submit(new detail::group_child<std::decay_t<F>, std::decay_t<A>...>(state_, std::forward<F>(f),
                                                                        std::forward<A>(a)...));
  }

  // wait() blocks until every child finished, then rethrows the first exception a child
  // threw (cancellations caused by the group are not errors). Suspends a pool fiber (a
  // cancellation point), blocks a plain thread.
  void wait();

  // cancel() requests cancellation of every child and their descendants. Never blocks.
  void cancel() noexcept;

 private:
  void submit(detail::job* j);

  detail::pool* pool_;  // the executor's pool, which outlives an executor deleted from inside
  detail::task_group_state* state_;
  int uncaught_at_start_;  // std::uncaught_exceptions() when the group was made
};

}  // namespace weft
