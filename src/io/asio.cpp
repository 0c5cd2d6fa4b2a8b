// asio.cpp: waiting on Asio operations, and the io_context each executor runs.
#include <weft/asio.hpp>

#include <chrono>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <boost/asio/detail/call_stack.hpp>
#include <boost/asio/detail/thread_context.hpp>
#include <boost/asio/detail/thread_info_base.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>

#include "sched/cancel_scope.hpp"
#include "sched/pool.hpp"
#include "sched/waiting.hpp"

namespace weft {
namespace detail {

namespace {

// worker_recycling gives a worker thread what a thread inside io_context::run() has: a
// thread_info_base at the bottom of Asio's call stack, whose cache recycles the memory Asio
// allocates without asking the handler's allocator (cancellation handlers, type-erased
// functions) -- an operation's own memory comes from op_allocator. Without it, the fibers
// that start operations (outside any run or poll) got a malloc and a free for each: counted
// with a uprobe on malloc, HTTP /hello on Beast made 19 allocations per request against 8 on
// Asio's coroutines, 16 with it (11 against 8 once op_allocator came). Its key is none of
// Asio's: running_in_this_thread() and the private queues of the io_contexts the worker polls
// do not change. Made on the thread's first poll or first use_fiber operation, whichever comes
// first -- a worker may run fibers long before it ever polls (they come from the queues, woken
// by other workers' polls) -- when nothing of Asio's is on its call stack, so that it is at
// the bottom; it lives as long as the thread.
class worker_recycling {
  struct no_io_context : boost::asio::detail::thread_context {};
  using thread_call_stack = boost::asio::detail::call_stack<boost::asio::detail::thread_context,
                                                            boost::asio::detail::thread_info_base>;

 public:
  static void attach() {
    // `closed` is set when `here` goes at thread exit, made or not: an operation started later
    // in the exit (by another thread_local's destructor) must not make it again.
    struct holder {
      std::optional<worker_recycling> made;
      ~holder() { closed = true; }
    };
    thread_local holder here;
    if (!here.made && !closed && thread_call_stack::top() == nullptr) here.made.emplace();
  }
  worker_recycling() = default;
  worker_recycling(const worker_recycling&) = delete;
  worker_recycling& operator=(const worker_recycling&) = delete;

 private:
  static constinit thread_local bool closed;  // trivial: still readable after `here` is gone
  // Declared in this order: the context leaves the call stack before the cache is freed.
  boost::asio::detail::thread_info_base cache_;
  no_io_context key_;
  thread_call_stack::context on_stack_{&key_, cache_};
};
constinit thread_local bool worker_recycling::closed = false;

}  // namespace

void* io_wait::operator new(std::size_t bytes) {
  // The operation this io_wait is for allocates next, some of it from the call stack's cache.
  worker_recycling::attach();
  return op_memory_allocate(bytes, __STDCPP_DEFAULT_NEW_ALIGNMENT__);
}

void io_wait::operator delete(void* p, std::size_t bytes) noexcept {
  op_memory_deallocate(p, bytes, __STDCPP_DEFAULT_NEW_ALIGNMENT__);
}

void io_wait::finish(bool ran, std::exception_ptr e) noexcept {
  std::lock_guard<spinlock> g(lock);
  done = true;
  abandoned = !ran;
  failure = std::move(e);
  wake_all(waiters);
}

namespace {

// While weft's reactor runs handlers on this thread (io_runner::guarded), the fiber_handlers
// destroyed uncalled by an exception's unwinding -- a completion condition that threw inside a
// composed operation -- wait here for that exception, which guarded() then hands to their
// callers instead of on_unhandled_exception.
constinit thread_local bool in_reactor_handlers = false;
thread_local std::vector<io_wait*> dropped_by_unwinding;

// cancel_request asks an operation to cancel. Asio's cancellation signals are not
// thread-safe: it runs on the operation's own executor (an I/O object on a strand has its
// handlers there), and holds the operation's step lock, which every handler of the operation
// holds while it runs (op_executor in weft/asio.hpp) -- weft's io_context runs on every
// worker, so its executor alone orders nothing. Destroyed without running (its io_context
// went away), it still lets the caller go.
class cancel_request {
 public:
  explicit cancel_request(io_wait* w) noexcept : w_(w) { w->retain(); }
  cancel_request(cancel_request&& o) noexcept : w_(std::exchange(o.w_, nullptr)) {}
  cancel_request& operator=(cancel_request&&) = delete;
  ~cancel_request() { release(false); }
  void operator()() {
    bool stoppable = true;
    {
      const step_guard step(w_);
      bool over;
      {
        std::lock_guard<spinlock> g(w_->lock);
        over = w_->done;
      }
      // Over: the completion ran (it sets done under the step lock) while this request was on
      // its way. Nothing to stop, and the handlers left in the slot belong to an operation that
      // is gone, on an I/O object its caller may have destroyed since: no emit.
      if (!over) {
        // No handler in the slot: the operation does not support per-operation cancellation (a
        // resolver, a user's initiation that ignores the slot). Nothing can stop it, so the
        // caller does not wait for it.
        stoppable = w_->signal.slot().has_handler();
        if (stoppable) w_->signal.emit(boost::asio::cancellation_type::terminal);
      }
    }
    release(!stoppable);
  }

 private:
  void release(bool uncancellable) noexcept {
    if (io_wait* w = std::exchange(w_, nullptr)) {
      {
        std::lock_guard<spinlock> g(w->lock);
        w->cancel_pending = false;
        w->uncancellable = uncancellable;
        wake_all(w->waiters);
      }
      w->release();
    }
  }
  io_wait* w_;
};

// stopped() is true when the operation's executor is an io_context that is stopped: nothing
// runs there until someone restarts it, so neither the operation nor a cancellation request
// makes progress.
bool stopped(const boost::asio::any_io_executor& ex) noexcept {
  if (const auto* io = ex.target<boost::asio::io_context::executor_type>()) {
    return io->context().stopped();
  }
  return false;
}

// kAbandonAfter: how long a cancelled caller waits for its operation to end once it asked it
// to. An operation that supports cancellation ends within microseconds of the request, when
// its io_context runs; one whose io_context nobody runs would hold the caller forever.
constexpr std::chrono::milliseconds kAbandonAfter{50};

}  // namespace

void handler_dropped(io_wait* w) noexcept {
  if (in_reactor_handlers && std::uncaught_exceptions() > 0) {
    try {
      dropped_by_unwinding.push_back(w);
      return;  // guarded() finishes it with the exception (and releases it)
    } catch (...) {
      // Out of memory: the caller sees an abandoned operation.
    }
  }
  w->finish(false);
  w->release();
}

void wait_io(io_wait& w) {
  const io_wait_mark waiting;  // executor_stats::io_waiting
  static const wait_label label{"I/O", nullptr, nullptr};
  const wait_mark mark(label);
  try {
    block(
        w.lock, w.waiters, [&w] { return w.done; }, nullptr, true);
  } catch (const error&) {
    // Cancelled or out of time while the operation is pending: ask it to stop, and wait for it
    // to be over -- unless it cannot be stopped or nothing runs it: then the deadline wins and
    // the operation is abandoned (it completes into w, which it holds).
    bool pending;
    {
      std::lock_guard<spinlock> g(w.lock);
      pending = w.cancel_pending = !w.done;
    }
    if (pending) {
      try {
        boost::asio::post(w.io_executor, cancel_request(&w));
      } catch (...) {
        // Posting failed (out of memory): the operation finishes on its own.
        std::lock_guard<spinlock> g(w.lock);
        w.cancel_pending = false;
      }
      const auto give_up = clock::now() + kAbandonAfter;
      if (!stopped(w.io_executor)) {
        block(
            w.lock, w.waiters, [&w] { return w.done || (!w.cancel_pending && w.uncancellable); },
            &give_up, false);
      }
    }
    throw;
  }
  if (w.failure) std::rethrow_exception(w.failure);
  if (w.abandoned) {
    throw boost::system::system_error(
        boost::asio::error::operation_aborted,
        "weft: the operation's handler was destroyed without being called (its io_context "
        "was destroyed)");
  }
}

// io_runner is an executor's io_context, run by the executor's own workers (see reactor in
// pool.hpp): no I/O thread, no hand-off between threads when a completion wakes a fiber on
// the worker that ran it.
class io_runner final : public pool_service, public reactor {
  static constexpr unsigned kPollBatch = 64;

 public:
  explicit io_runner(pool& owner)
      : owner_(owner),
        // With one worker nobody polls concurrently: Asio's one-thread mode then saves work.
        io_(owner.size() == 1 ? 1 : BOOST_ASIO_CONCURRENCY_HINT_DEFAULT),
        work_(io_.get_executor()) {}
  ~io_runner() override {
    // The workers are gone: handlers still queued are destroyed uncalled (their fibers, if
    // any were left, would see abandoned operations).
    work_.reset();
  }
  boost::asio::io_context& io() noexcept { return io_; }

  void poll() noexcept override {
    // At most kPollBatch handlers a pass, not io_context::poll(): that runs until no handler
    // is ready, so a handler that keeps posting itself (a user's retry loop waiting for a
    // fiber to act) held the worker in poll() for ever and the fiber never ran.
    guarded([this] {
      for (unsigned i = 0; i < kPollBatch && io_.poll_one() != 0; ++i) {
      }
    });
  }
  bool poll_one() noexcept override {
    bool ran = false;
    guarded([&] { ran = io_.poll_one() != 0; });
    return ran;
  }
  void run_one_until(std::chrono::steady_clock::time_point deadline) noexcept override {
    guarded([&] {
      if (deadline == std::chrono::steady_clock::time_point::max()) {
        io_.run_one();
      } else {
        io_.run_one_until(deadline);
      }
    });
  }
  void interrupt(worker_slot& target) noexcept override {
    try {
      boost::asio::post(io_, [&target] {
        // Run by the target: its run_one_until() returns. Run by another worker's poll while
        // the target still blocks: that worker sends it again after its poll.
        if (tl_slot != &target && target.polling.load(std::memory_order_seq_cst) != nullptr) {
          taken_interrupts.push_back(&target);
        }
      });
    } catch (...) {
      // Out of memory: the poller wakes at its deadline or its next completion instead.
    }
  }
  void repeat_interrupts() noexcept override {
    while (!taken_interrupts.empty()) {
      worker_slot* target = taken_interrupts.back();
      taken_interrupts.pop_back();
      if (target->polling.load(std::memory_order_seq_cst) != nullptr) interrupt(*target);
    }
  }

 private:
  // guarded() runs the io_context; a handler's exception goes to the callers whose operations
  // it ended (a use_fiber completion condition that threw), else to on_unhandled_exception.
  //
  // The io_context is weft's, run by the workers for the executor's whole life: one stopped
  // by io_context(ex).stop() is restarted (else every idle worker spun through a run_one()
  // that returned at once, and no operation completed any more). restart() must not overlap a
  // run or poll: users_ counts the workers inside, restarting_ keeps new ones out meanwhile.
  template <class F>
  void guarded(F run) noexcept {
    worker_recycling::attach();
    if (io_.stopped()) restart();
    users_.fetch_add(1, std::memory_order_seq_cst);
    if (restarting_.load(std::memory_order_seq_cst)) {
      users_.fetch_sub(1, std::memory_order_release);
      return;
    }
    in_reactor_handlers = true;
    try {
      run();
    } catch (...) {
      if (dropped_by_unwinding.empty()) {
        report_unhandled(owner_, std::current_exception());
      }
      for (io_wait* w : dropped_by_unwinding) {
        w->finish(false, std::current_exception());
        w->release();
      }
      dropped_by_unwinding.clear();
    }
    in_reactor_handlers = false;
    // Dropped while an exception was in flight that something inside caught: just abandoned.
    for (io_wait* w : dropped_by_unwinding) {
      w->finish(false);
      w->release();
    }
    dropped_by_unwinding.clear();
    users_.fetch_sub(1, std::memory_order_release);
  }

  void restart() noexcept {
    std::unique_lock<std::mutex> one(restart_mutex_, std::try_to_lock);
    if (!one.owns_lock()) return;  // another worker restarts it
    restarting_.store(true, std::memory_order_seq_cst);
    // A stopped io_context returns from run and poll at once; only a handler in progress
    // keeps a worker inside.
    while (users_.load(std::memory_order_seq_cst) != 0)
      std::this_thread::yield();
    if (io_.stopped()) io_.restart();
    restarting_.store(false, std::memory_order_seq_cst);
  }

  pool& owner_;
  std::atomic<unsigned> users_{0};
  std::atomic<bool> restarting_{false};
  std::mutex restart_mutex_;
  boost::asio::io_context io_;  // several workers may poll it at once (see interrupt())
  // The wake-ups for other workers that this thread's poll ran (see reactor::interrupt).
  static thread_local std::vector<worker_slot*> taken_interrupts;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
};

thread_local std::vector<worker_slot*> io_runner::taken_interrupts;

const boost::asio::io_context* caller_pool_io() noexcept {
  if (fiber_record* self = current_record()) {
    // io_runner is the only reactor.
    if (reactor* r = self->owner.current_reactor()) return &static_cast<io_runner*>(r)->io();
  }
  return nullptr;
}

boost::asio::any_io_executor cancel_executor() {
  if (fiber_record* self = current_record()) {
    // io_runner is the only reactor.
    if (reactor* r = self->owner.current_reactor()) {
      return static_cast<io_runner*>(r)->io().get_executor();
    }
  }
  return boost::asio::system_executor();
}

}  // namespace detail

boost::asio::io_context& io_context(executor& ex) {
  detail::pool& p = *detail::pool_of(ex);
  detail::pool_service* s = p.service(detail::pool::io_slot, [&p] {
    auto* runner = new detail::io_runner(p);
    p.set_reactor(runner);
    return runner;
  });
  return static_cast<detail::io_runner*>(s)->io();
}

}  // namespace weft
