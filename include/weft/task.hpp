// weft/task.hpp: the handle to a spawned fiber's result.
#pragma once

#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>

#include <weft/detail/job.hpp>
#include <weft/detail/outcome.hpp>
#include <weft/detail/spinlock.hpp>
#include <weft/detail/time.hpp>

namespace weft {

namespace detail {

struct waiter;
struct reporter;

[[noreturn]] void throw_invalid_task();

// task_base is the untyped shared state between a spawned fiber and its task handle.
struct task_base : job {
  std::atomic<unsigned> refs{2};  // the handle's and the pool's
  std::atomic<bool> finished{false};
  spinlock lock;
  bool retrieved = false;         // get() took the outcome (guarded by lock)
  bool handle_dropped = false;    // guarded by lock
  waiter* waiters = nullptr;      // guarded by lock
  reporter* unhandled = nullptr;  // set when the fiber failed, to report a dropped handle
  std::exception_ptr failure;

  ~task_base() override;

  // wait() blocks until the fiber finished: it suspends a pool fiber (a cancellation point)
  // and blocks a plain thread. On a worker thread outside a fiber (an Asio handler) it throws
  // weft::error(would_deadlock) unless the fiber finished already (executor::current()).
  void wait();
  // wait_until() is wait() with a deadline; false if the deadline passed first.
  bool wait_until(std::chrono::steady_clock::time_point deadline);
  // drop_handle() is the handle letting go; an unretrieved failure is reported.
  void drop_handle() noexcept;
  void release() noexcept {
    if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }
  void complete(pool& owner) noexcept final;
  void fail(pool& owner, std::exception_ptr e) noexcept final {
    failure = std::move(e);
    complete(owner);
  }
  // rethrow_failure() throws the fiber's exception, if any, marking it retrieved.
  void rethrow_failure();
};

// task_result<R> adds the storage for an R.
template <class R>
struct task_result : task_base {
  outcome_value<R> result;
  R take() {
    rethrow_failure();
    return result.take();
  }
};

// spawned is the job of executor::spawn: the callable, its arguments and the result.
template <class R, class F, class... A>
struct spawned final : task_result<R> {
  template <class G, class... B>
  explicit spawned(G&& g, B&&... b) : call(std::forward<G>(g), std::forward<B>(b)...) {}

  void run(pool&) noexcept override {
    try {
      this->result.produce([this]() -> R { return call.invoke(); });
    } catch (...) {
      this->failure = std::current_exception();
    }
  }
  void discard_call() noexcept override { call.discard(); }

  stored_call<F, A...> call;
};

// task_adopter<R>::adopt() makes the task handle of a job already submitted (weft::spawn).
template <class R>
class task_adopter;

}  // namespace detail

// task<R> is the move-only handle to a spawned fiber. Dropping it without get() lets the
// fiber run on; an exception it then throws goes to executor_options::on_unhandled_exception
// -- except weft::error(cancelled) and weft::error(deadline_exceeded): a fiber stopped
// because it was told to did not fail (a waiter that left at its deadline drops its handles).
template <class R>
class task {
 public:
  // task() is an empty handle: valid() is false.
  task() noexcept = default;
  // Moving transfers the fiber's result; the moved-from task is no longer valid().
  task(task&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
  task& operator=(task&& other) noexcept {
    if (this != &other) {
      drop();
      state_ = std::exchange(other.state_, nullptr);
    }
    return *this;
  }
  task(const task&) = delete;
  task& operator=(const task&) = delete;
  // ~task() lets the fiber run on without waiting; see the class comment for its exception.
  ~task() { drop(); }

  // get() waits, then returns the result or rethrows the fiber's exception. Once: the task
  // is no longer valid() afterwards. Suspends a pool fiber (a cancellation point), blocks a
  // plain thread. Throws weft::error(invalid_task) on a task that is not valid(), and
  // weft::error(would_deadlock) -- the task stays valid -- where waiting would hold a worker
  // thread (an Asio handler; see executor::current()) and the fiber has not finished.
  R get() {
    check();
    state_->wait();
    detail::task_result<R>* s = std::exchange(state_, nullptr);
    struct releaser {
      detail::task_result<R>* s;
      ~releaser() { s->drop_handle(); }
    } r{s};
    return s->take();
  }

  // wait() waits until the fiber finished, without taking the result.
  void wait() {
    check();
    state_->wait();
  }

  // wait_for() waits at most d (saturated: any duration is fine); true if the fiber
  // finished.
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> d) {
    check();
    return state_->wait_until(detail::deadline_after(d));
  }

  // ready() is true when the fiber finished (get() will not block). Never blocks.
  bool ready() const noexcept {
    return state_ != nullptr && state_->finished.load(std::memory_order_acquire);
  }

  // valid() is false for a default-constructed, moved-from or already-got task.
  bool valid() const noexcept { return state_ != nullptr; }

 private:
  friend class executor;
  friend class detail::task_adopter<R>;
  explicit task(detail::task_result<R>* s) noexcept : state_(s) {}

  void check() const {
    if (state_ == nullptr) detail::throw_invalid_task();
  }
  void drop() noexcept {
    if (state_ != nullptr) std::exchange(state_, nullptr)->drop_handle();
  }

  detail::task_result<R>* state_ = nullptr;
};

namespace detail {
template <class R>
class task_adopter {
 public:
  static task<R> adopt(task_result<R>* s) noexcept { return task<R>(s); }
};
}  // namespace detail

}  // namespace weft
