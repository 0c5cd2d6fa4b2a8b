// weft/executor.hpp: the thread pool that runs fibers, each inheriting its spawner's context.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <weft/detail/job.hpp>
#include <weft/error.hpp>
#include <weft/introspection.hpp>
#include <weft/task.hpp>

namespace weft {

// executor_options configures an executor; every field has a sensible default. Values out
// of range are refused by the constructor with errc::invalid_argument. The first fields keep
// the order of API.md, so positional initialisation stays valid.
struct executor_options {
  // threads is the number of worker threads: 1 to max_threads. The default is the number of
  // hardware threads (1 when the system cannot tell).
  unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  // stack_size is each fiber's stack: 16 KiB to max_stack_size (1 GiB).
  std::size_t stack_size = 128 * 1024;
  // guard_pages puts a PROT_NONE region of guard_size bytes below every stack: an overflow
  // whose first touch below the stack falls in that region faults there instead of silently
  // corrupting another fiber's stack. A single frame larger than guard_size (a big local
  // array) can jump over it; compile with -fstack-clash-protection to have such frames probed
  // page by page, which makes any guard catch them. Stacks are pooled, so the cost (one
  // mprotect and one kernel mapping per stack; see vm.max_map_count) is paid once per stack.
  bool guard_pages = false;
  // on_unhandled_exception receives exceptions nobody can catch: of post()ed work, of tasks
  // whose handle was dropped, of a group nobody waited for, of destructors run at a fiber's
  // end. The default prints what() to stderr and carries on. Called on whichever thread
  // notices the exception: a worker (on a fiber of the pool or its main context), or the
  // thread that dropped a task handle; it should be quick and must not block.
  std::function<void(std::exception_ptr)> on_unhandled_exception{};

  // blocking_threads caps the threads that run offload()ed calls (1 to max_threads); they
  // start on demand.
  unsigned blocking_threads = 64;
  // guard_size is the guard region per stack when guard_pages is set (rounded up to pages;
  // 4 KiB to max_stack_size). It costs address space only, no memory.
  std::size_t guard_size = 64 * 1024;
  // name appears in error messages and introspection; empty: "executor-<n>".
  std::string name{};

  static constexpr unsigned max_threads = 16384;
  static constexpr std::size_t max_stack_size = std::size_t{1} << 30;
};

class executor;

namespace detail {

// spawn_result_t is what f(a...) returns when a fiber calls it with decayed copies.
template <class F, class... A>
using spawn_result_t = std::invoke_result_t<std::decay_t<F>, std::decay_t<A>...>;

// pool_of() is ex's pool (for weft's own extensions, such as weft/asio.hpp).
pool* pool_of(executor& ex) noexcept;

// submit_here() hands j to the pool of the calling fiber (taking it over), as
// executor::current()->spawn() would without touching the executor object, which another
// fiber may be destroying meanwhile (the pool outlives it). Throws errc::not_in_executor
// (destroying j) where no fiber of weft runs; `what` names the caller.
void submit_here(job* j, const char* what);

// report_unhandled() hands e to the pool's on_unhandled_exception.
void report_unhandled(pool& owner, std::exception_ptr e) noexcept;

// refuse_wait_on_worker() throws weft::error(would_deadlock) when the calling thread is a
// worker of an executor but runs none of its fibers -- an Asio handler of io_context(ex), a
// completion condition -- since a blocking wait there would hold the worker and every fiber
// queued on it (with one worker: forever). `what` names the refused call. Elsewhere (a pool
// fiber, a plain thread) it does nothing.
void refuse_wait_on_worker(const char* what);

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
  // workers finish and exit unjoined instead; its fibers then see a stand-in executor (from
  // executor::current()) that keeps spawning their children, never a freed object.
  ~executor();

  // spawn() starts f(a...) on a new fiber and returns its task. Callable from any thread or
  // fiber; never blocks. Throws errc::executor_closed after shutdown() when called from
  // outside the pool (fibers of the pool may still spawn).
  //
  // Out of fiber stacks (none free and the kernel maps no more: vm.max_map_count with
  // guard_pages, or address space): a spawn or post from one of the pool's own fibers -- which
  // makes its fiber at once -- throws std::bad_alloc, saying which limit was hit. Work
  // submitted from anywhere else is queued first; it waits in the queue until a fiber ends
  // and gives a stack back, and is never dropped. Only when no stack at all is in use (none
  // will come back) does it fail: its task rethrows the bad_alloc, a post()ed job's goes to
  // on_unhandled_exception.
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
  // throws weft::error(would_deadlock). Later calls return at once.
  void join();

  // stats() is a snapshot of the executor's counters; cheap (a few loads per worker),
  // callable from any thread or fiber at any time.
  executor_stats stats() const noexcept;

  // workers() is stats() per worker thread.
  std::vector<worker_stats> workers() const;

  // fibers() lists every live fiber of this executor (weft/introspection.hpp), sorted by
  // id. Callable from any thread or fiber while the pool runs: it stops nobody. A worker about
  // to resume a fiber whose context is being copied waits until the listing has taken a
  // reference to it (no printing happens meanwhile), and a fiber that keeps running on another
  // worker throughout is listed without its context. Fibers that start or end meanwhile may or may
  // not be listed.
  std::vector<fiber_info> fibers() const;

  // dump() writes fibers() for people: a summary line, then one fiber a line, each under
  // the fiber that spawned it, with its context.
  void dump(std::ostream& out) const;

  // thread_count() is the number of worker threads.
  unsigned thread_count() const noexcept;

  // name() is executor_options::name, or the "executor-<n>" given in its place.
  const std::string& name() const noexcept;

  // current() is the executor of the calling fiber, or nullptr where no fiber of weft runs:
  // on plain threads, in offload()ed calls, and in code a worker thread runs outside its
  // fibers -- an Asio handler of io_context(ex), for one. That is also the one rule for what
  // may wait: a pool fiber's waits suspend it; a plain thread's block it; on a worker thread
  // outside a fiber every blocking call (task get/wait, task_group, offload) throws
  // weft::error(would_deadlock) instead of holding the worker -- spawn a fiber there
  // (ex.spawn/post, which never wait) and wait in it.
  static executor* current() noexcept;

 private:
  friend class task_group;
  friend detail::pool* detail::pool_of(executor& ex) noexcept;

  // executor(pool) is the stand-in that takes over an orphaned pool (see ~executor).
  explicit executor(detail::pool* adopted) noexcept;

  // submit() hands j to the pool (taking it over; on failure it is destroyed and the error
  // rethrown). scope, if not null, replaces the caller's inherited cancellation scope.
  void submit(detail::job* j, detail::cancel_scope* scope);

  std::unique_ptr<detail::pool> pool_;
};

// spawn() starts f(a...) on a child fiber of executor::current(); throws
// errc::not_in_executor where there is no current executor.
template <class F, class... A>
auto spawn(F&& f, A&&... a) -> task<detail::spawn_result_t<F, A...>> {
  using R = detail::spawn_result_t<F, A...>;
  auto* t = new detail::spawned<R, std::decay_t<F>, std::decay_t<A>...>(std::forward<F>(f),
                                                                        std::forward<A>(a)...);
  detail::submit_here(t, "weft::spawn()");
  return detail::task_adopter<R>::adopt(t);
}

}  // namespace weft
