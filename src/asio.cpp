// asio.cpp: waiting on Asio operations, and the io_context each executor runs.
#include <weft/asio.hpp>

#include <chrono>
#include <mutex>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>

#include "cancel_scope.hpp"
#include "pool.hpp"
#include "waiting.hpp"

namespace weft {
namespace detail {

void io_wait::finish(bool ran) noexcept {
  std::lock_guard<spinlock> g(lock);
  done = true;
  abandoned = !ran;
  wake_all(waiters);
}

namespace {

// cancel_request asks an operation to cancel, on the operation's own executor: Asio's
// cancellation signals are not thread-safe. Destroyed without running (its io_context went
// away), it still lets the caller go.
class cancel_request {
 public:
  explicit cancel_request(io_wait* w) noexcept : w_(w) {}
  cancel_request(cancel_request&& o) noexcept : w_(std::exchange(o.w_, nullptr)) {}
  cancel_request& operator=(cancel_request&&) = delete;
  ~cancel_request() { release(); }
  void operator()() {
    w_->signal.emit(boost::asio::cancellation_type::terminal);
    release();
  }

 private:
  void release() noexcept {
    if (io_wait* w = std::exchange(w_, nullptr)) {
      std::lock_guard<spinlock> g(w->lock);
      w->cancel_pending = false;
      wake_all(w->waiters);
    }
  }
  io_wait* w_;
};

}  // namespace

void wait_io(io_wait& w) {
  const io_wait_mark waiting;  // executor_stats::io_waiting
  try {
    block(
        w.lock, w.waiters, [&w] { return w.done; }, nullptr, true);
  } catch (const error&) {
    // Cancelled or out of time while the operation is pending: ask it to stop, then wait for
    // it (and for the request) to be over before this frame -- which holds both -- goes.
    {
      std::lock_guard<spinlock> g(w.lock);
      w.cancel_pending = !w.done;
    }
    if (w.cancel_pending) {
      try {
        boost::asio::post(w.io_executor, cancel_request(&w));
      } catch (...) {
        // Posting failed (out of memory): the operation finishes on its own.
        std::lock_guard<spinlock> g(w.lock);
        w.cancel_pending = false;
      }
    }
    block(
        w.lock, w.waiters, [&w] { return w.done && !w.cancel_pending; }, nullptr, false);
    throw;
  }
  if (w.abandoned) {
    throw boost::system::system_error(boost::asio::error::operation_aborted,
                                      "weft: the operation's io_context was destroyed");
  }
}

// io_runner is an executor's io_context, run by the executor's own workers (see reactor in
// pool.hpp): no I/O thread, no hand-off between threads when a completion wakes a fiber on
// the worker that ran it.
class io_runner final : public pool_service, public reactor {
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
    guarded([this] { io_.poll(); });
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
  // guarded() runs the io_context; a handler's exception goes to on_unhandled_exception.
  template <class F>
  void guarded(F run) noexcept {
    try {
      run();
    } catch (...) {
      report_unhandled(owner_, std::current_exception());
    }
  }

  pool& owner_;
  boost::asio::io_context io_;  // several workers may poll it at once (see interrupt())
  // The wake-ups for other workers that this thread's poll ran (see reactor::interrupt).
  static thread_local std::vector<worker_slot*> taken_interrupts;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
};

thread_local std::vector<worker_slot*> io_runner::taken_interrupts;

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
