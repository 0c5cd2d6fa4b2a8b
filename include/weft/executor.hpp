// weft/executor.hpp: the thread pool that runs fibers, each inheriting its spawner's context.
#pragma once

#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>

#include <weft/detail/job.hpp>
#include <weft/error.hpp>
#include <weft/task.hpp>

namespace weft {

// executor_options configures an executor; every field has a sensible default.
struct executor_options {
  // threads is the number of worker threads; 0 is refused with errc::invalid_argument.
  unsigned threads = std::thread::hardware_concurrency();
  // stack_size is each fiber's stack; below 16 KiB is refused with errc::invalid_argument.
  std::size_t stack_size = 128 * 1024;
  // guard_pages puts a protected page below every stack: an overflow faults there instead of
  // silently corrupting memory. Stacks are pooled, so the cost is paid once per stack.
  bool guard_pages = false;
  // on_unhandled_exception receives exceptions of post()ed work and of tasks whose handle
  // was dropped. The default prints what() to stderr and carries on. Called on a pool fiber.
  std::function<void(std::exception_ptr)> on_unhandled_exception;
};

namespace detail {

// spawn_result_t is what f(a...) returns when a fiber calls it with decayed copies.
template <class F, class... A>
using spawn_result_t = std::invoke_result_t<std::decay_t<F>, std::decay_t<A>...>;

// report_unhandled() hands e to the pool's on_unhandled_exception.
void report_unhandled(pool& owner, std::exception_ptr e) noexcept;

// posted is the job of executor::post: a callable whose exception goes to the handler.
template <class F, class... A>
struct posted final : job {
  template <class G, class... B>
  explicit posted(G&& g, B&&... b) : call(std::forward<G>(g), std::forward<B>(b)...) {}
  void run(pool& owner) noexcept override;
  void discard_call() noexcept override { call.discard(); }
  void complete(pool&) noexcept override { delete this; }
  void fail(pool& owner, std::exception_ptr e) noexcept override {
    report_unhandled(owner, std::move(e));
    delete this;
  }
  stored_call<F, A...> call;
};

template <class F, class... A>
void posted<F, A...>::run(pool& owner) noexcept {
  try {
    call.invoke();
  } catch (...) {
    report_unhandled(owner, std::current_exception());
  }
}

}  // namespace detail

// executor runs fibers on a pool of worker threads. A fiber may run on any worker and move
// between them. Work submitted with spawn/post/run starts with a snapshot of the caller's
// current context. Non-copyable, non-movable.
class executor {
 public:
  // executor() starts executor_options{}.threads workers.
  executor();
  // executor(threads) starts that many workers; 0 throws errc::invalid_argument.
  explicit executor(unsigned threads);
  // executor(options) starts a pool as configured; bad options throw errc::invalid_argument.
  explicit executor(executor_options options);
  executor(const executor&) = delete;
  executor& operator=(const executor&) = delete;
  // ~executor() is shutdown() then join(): every accepted piece of work runs to completion.
  // Called from one of its own fibers (it cannot wait for itself) it shuts down and lets the
  // workers finish and exit unjoined instead.
  ~executor();

  // spawn() starts f(a...) on a new fiber and returns its task. Callable from any thread or
  // fiber; never blocks. Throws errc::executor_closed after shutdown() when called from
  // outside the pool (fibers of the pool may still spawn).
  template <class F, class... A>
  auto spawn(F&& f, A&&... a) -> task<detail::spawn_result_t<F, A...>> {
    using R = detail::spawn_result_t<F, A...>;
    auto* t = new detail::spawned<R, std::decay_t<F>, std::decay_t<A>...>(std::forward<F>(f),
                                                                          std::forward<A>(a)...);
    submit(t, nullptr);
    return task<R>(t);
  }

  // post() is spawn() without a handle: fire and forget. An exception goes to
  // executor_options::on_unhandled_exception.
  template <class F, class... A>
  void post(F&& f, A&&... a) {
    submit(new detail::posted<std::decay_t<F>, std::decay_t<A>...>(std::forward<F>(f),
                                                                   std::forward<A>(a)...),
           nullptr);
  }

  // run() is spawn(f, a...).get(): from a pool fiber it suspends that fiber (so it cannot
  // deadlock a 1-thread pool), from a plain thread it blocks the thread.
  template <class F, class... A>
  auto run(F&& f, A&&... a) -> detail::spawn_result_t<F, A...> {
    return spawn(std::forward<F>(f), std::forward<A>(a)...).get();
  }

  // shutdown() stops accepting work from outside the pool. Work already accepted, and the
  // children it spawns, still runs to completion. Idempotent; never blocks.
  void shutdown() noexcept;

  // join() shuts down, waits until all work is done, and joins the worker threads. Blocks a
  // plain thread; suspends a fiber of another executor. From a fiber of this executor it
  // throws std::system_error(resource_deadlock_would_occur). Later calls return at once.
  void join();

  // thread_count() is the number of worker threads.
  unsigned thread_count() const noexcept;

  // current() is the executor of the calling fiber, or nullptr outside any pool.
  static executor* current() noexcept;

 private:
  friend class task_group;

  // submit() hands j to the pool (taking it over; on failure it is destroyed and the error
  // rethrown). scope, if not null, replaces the caller's inherited cancellation scope.
  void submit(detail::job* j, detail::cancel_scope* scope);

  std::unique_ptr<detail::pool> pool_;
};

// spawn() starts f(a...) on a child fiber of executor::current(); throws
// errc::not_in_executor where there is no current executor.
template <class F, class... A>
auto spawn(F&& f, A&&... a) -> task<detail::spawn_result_t<F, A...>> {
  executor* ex = executor::current();
  if (ex == nullptr) {
    throw error(errc::not_in_executor,
                "weft: weft::spawn() called outside an executor (use executor::spawn)");
  }
  return ex->spawn(std::forward<F>(f), std::forward<A>(a)...);
}

}  // namespace weft
