// executor.cpp: the pool behind an executor -- workers, submission, shutdown.
#include <cstdio>
#include <string>

#include <boost/fiber/algo/algorithm.hpp>
#include <boost/fiber/fiber.hpp>
#include <boost/fiber/operations.hpp>

#include "sched/asan.hpp"
#include "sched/cancel_scope.hpp"
#include "sched/pool.hpp"
#include "sched/waiting.hpp"

namespace weft {
namespace detail {

constinit thread_local pool* tl_pool WEFT_TLS_MODEL = nullptr;
constinit thread_local worker_slot* tl_slot WEFT_TLS_MODEL = nullptr;

// ---- jobs ----------------------------------------------------------------------------

job::~job() {
  release(context);
  release(scope);
}

// ---- unhandled exceptions --------------------------------------------------------------

void reporter::report(std::exception_ptr e) noexcept {
  try {
    if (handler) {
      handler(e);
      return;
    }
    print_unhandled(e, "in a fiber");
  } catch (...) {
    std::fprintf(stderr, "weft: on_unhandled_exception threw; exception dropped\n");
  }
}

worker_slot* io_wait_mark::tl_slot_of_current_pool() noexcept {
  return current_record() != nullptr ? tl_slot : nullptr;
}

void submit_here(job* j, const char* what) {
  const fiber_record* self = current_record();
  if (self == nullptr) {
    delete j;
    throw error(errc::not_in_executor,
                std::string("weft: ") + what + " called outside an executor (use executor::spawn)");
  }
  self->owner.submit(j, nullptr);
}

pool* pool_of(executor& ex) noexcept {
  return ex.pool_.get();
}

void report_unhandled(pool& owner, std::exception_ptr e) noexcept {
  owner.unhandled->report(e);
}

void refuse_wait_on_worker(const char* what) {
  const pool* p = tl_pool;
  if (p == nullptr || current_record() != nullptr) return;
  throw error(errc::would_deadlock,
              std::string("weft: ") + what +
                  " called from an Asio handler (or other code run outside a fiber) on a worker "
                  "thread of executor '" +
                  p->name() +
                  "': waiting there would block the worker and the fibers queued on it; "
                  "spawn a fiber (executor::spawn or post) and wait in it");
}

// ---- the pool --------------------------------------------------------------------------

namespace {

std::atomic<unsigned> executors_made{0};

[[noreturn]] void refuse(const std::string& what) {
  throw error(errc::invalid_argument, "weft: executor_options::" + what);
}

executor_options checked(executor_options o) {
  using limits = executor_options;
  if (o.threads == 0 || o.threads > limits::max_threads) {
    refuse("threads is " + std::to_string(o.threads) + "; an executor needs 1 to " +
           std::to_string(limits::max_threads) + " worker threads");
  }
  if (o.stack_size < 16 * 1024 || o.stack_size > limits::max_stack_size) {
    refuse("stack_size is " + std::to_string(o.stack_size) +
           " bytes; it must be 16384 (16 KiB) to " + std::to_string(limits::max_stack_size) +
           " (1 GiB)");
  }
  if (o.guard_pages && (o.guard_size < 4096 || o.guard_size > limits::max_stack_size)) {
    refuse("guard_size is " + std::to_string(o.guard_size) + " bytes; it must be 4096 to " +
           std::to_string(limits::max_stack_size));
  }
  if (o.blocking_threads == 0 || o.blocking_threads > limits::max_threads) {
    refuse("blocking_threads is " + std::to_string(o.blocking_threads) + "; it must be 1 to " +
           std::to_string(limits::max_threads));
  }
  const unsigned n = executors_made.fetch_add(1, std::memory_order_relaxed) + 1;
  if (o.name.empty()) o.name = "executor-" + std::to_string(n);
  return o;
}

reporter* make_reporter(std::function<void(std::exception_ptr)> handler) {
  auto* r = new reporter;
  r->handler = std::move(handler);
  return r;
}

}  // namespace

pool::pool(executor& ex, executor_options options)
    : unhandled(make_reporter(options.on_unhandled_exception)),
      stacks(options.stack_size, options.guard_pages ? options.guard_size : 0),
      blocking(options.blocking_threads, options.name),
      owner_(&ex),
      options_(std::move(options)) {
  asymmetric_fence::init();  // before any worker switches
  try {
    workers_.reserve(options_.threads);
    for (unsigned i = 0; i < options_.threads; ++i) {
      workers_.push_back(std::make_unique<worker_slot>());
      workers_.back()->index = i;
    }
    threads_.reserve(options_.threads);
    for (unsigned i = 0; i < options_.threads; ++i) {
      threads_.emplace_back([this, i] { worker_main(i); });
    }
  } catch (...) {
    stop_workers();
    unhandled->release();
    throw;
  }
}

void pool::stop_workers() noexcept {
  exiting_.store(true, std::memory_order_seq_cst);
  for (auto& w : workers_) {
    w->wake();
  }
  for (auto& t : threads_) {
    t.join();
  }
}

pool::~pool() {
  unhandled->release();
}

void pool::worker_main(unsigned index) {
  tl_pool = this;
  tl_slot = &worker(index);
  // The thread's own record must exist before Boost's scheduler does, so that it is
  // destroyed after it (thread_locals die in reverse order of construction).
  fiber_state& thread_record = thread_state();
  stacks.attach(worker(index).stacks);
  boost::fibers::use_scheduling_algorithm<algorithm>(*this, index, thread_record);
  algorithm* algo = worker(index).algo;
  for (;;) {
    // Start a batch, then let fibers run: draining everything at once would make every
    // submitted job a live fiber (and a stack) at the same time.
    for (int batch = 0; batch < 32; ++batch) {
      job* j = take_injected();
      if (j == nullptr) break;
      try {
        launch(j);
      } catch (const stack_exhausted& e) {
        if (!e.held_elsewhere()) {
          // No stack is in use, so none will come back: the job fails instead of vanishing.
          j->fail(*this, std::current_exception());
          fiber_finished();
          continue;
        }
        // Accepted work is not dropped: the job goes back to the head of the queue and waits
        // until a fiber ends and gives its stack back (main_wanted() is false meanwhile).
        // Sleeping workers are woken to hand over the stacks in their caches (stack_pool::trim).
        {
          std::lock_guard<std::mutex> g(inject_mutex_);
          j->next = inject_head_;
          inject_head_ = j;
          if (inject_tail_ == nullptr) inject_tail_ = j;
          injected_.fetch_add(1, std::memory_order_seq_cst);
        }
        wake_sleeper(index);
        break;
      } catch (...) {
        // No fiber could be made (out of memory): the job fails instead of vanishing.
        j->fail(*this, std::current_exception());
        fiber_finished();
      }
    }
    if (exiting()) break;
    algo->park_main();
  }
  // Fibers that ended here but are not released yet give their stacks to the shared list.
  stacks.detach(worker(index).stacks);
}

job* pool::take_injected() noexcept {
  if (injected_.load(std::memory_order_seq_cst) == 0) return nullptr;
  std::lock_guard<std::mutex> g(inject_mutex_);
  job* j = inject_head_;
  if (j == nullptr) return nullptr;
  inject_head_ = j->next;
  if (inject_head_ == nullptr) inject_tail_ = nullptr;
  j->next = nullptr;
  injected_.fetch_sub(1, std::memory_order_seq_cst);
  return j;
}

worker_stats pool::worker_counters(unsigned i) const noexcept {
  const worker_slot& w = *workers_[i];
  worker_stats c;
  c.index = i;
  c.spawned = w.spawned.load(std::memory_order_relaxed);
  c.steals = w.steals.load(std::memory_order_relaxed);
  c.sleeps = w.sleeps.load(std::memory_order_relaxed);
  c.ready_fibers = w.ready_size.load(std::memory_order_relaxed) +
                   (w.run_next.load(std::memory_order_relaxed) != nullptr ? 1 : 0);
  return c;
}

executor_stats pool::stats() const noexcept {
  executor_stats s{};
  s.threads = size();
  std::size_t reserved = 0;
  std::int64_t io = 0;
  for (unsigned i = 0; i < size(); ++i) {
    const worker_stats c = worker_counters(i);
    s.ready_fibers += c.ready_fibers;
    s.spawned += c.spawned;
    s.steals += c.steals;
    s.sleeps += c.sleeps;
    reserved += workers_[i]->credit.load(std::memory_order_relaxed);
    io += workers_[i]->io_waiting.load(std::memory_order_relaxed);
  }
  // live_ counts the workers' credit too (see pool.hpp).
  const std::size_t counted = live_.load(std::memory_order_relaxed);
  s.live_fibers = counted > reserved ? counted - reserved : 0;
  s.io_waiting = io > 0 ? static_cast<std::size_t>(io) : 0;
  s.stack_bytes = stacks.mapped_bytes();
  s.blocking_threads = blocking.threads();
  s.blocking_busy = blocking.busy();
  s.stacks = stacks.allocated();
  return s;
}

void pool::launch(job* j) {
  WEFT_ASSERT(tl_pool == this && tl_slot != nullptr, "a fiber launched off its pool's workers");
  worker_slot& here = *tl_slot;
  const std::uint64_t nth = worker_slot::bump(here.spawned);
  // The slot and the record take the top of the stack; Boost gets the rest.
  boost::context::stack_context stack = stacks.allocate();
  char* top = static_cast<char*>(stack.sp);
  auto* slot = reinterpret_cast<fiber_slot*>(top - sizeof(fiber_slot));
  auto* rec = new (record_below(slot)) fiber_record(*this, j, *slot);
  // Ids need no shared counter: worker i hands out i+1, i+1+n, i+1+2n, ...
  const std::uint64_t id = (nth - 1) * size() + here.index + 1;
  fiber_record* parent = current_record();
  // Before the fiber is queued (awakened() marks the slot ready): a listing reads it then.
  slot->publish(
      {id, parent != nullptr && &parent->owner == this ? parent->slot.own_id() : 0, coarse_now()});
  rec->stack_bottom = top - stack.size;
  rec->stack_size = stack.size - reserved_bytes;
  stack.sp = top - reserved_bytes;
  stack.size -= reserved_bytes;
  try {
    asan::creating_fiber no_fake_frames;
    boost::fibers::fiber f(boost::fibers::launch::post,
                           static_cast<boost::fibers::fiber_properties*>(rec), std::allocator_arg,
                           prepared_stack{&stacks, stack, reserved_bytes},
                           [rec]() noexcept { rec->main(); });
    f.detach();  // from here on the fiber may already have run and ended elsewhere
  } catch (...) {
    // Give the inherited context and scope back to the job, which still owns the work.
    j->context = std::exchange(rec->own.root, nullptr);
    j->scope = std::exchange(rec->scope, nullptr);
    rec->~fiber_record();
    stack.sp = top;
    stack.size += reserved_bytes;
    stacks.deallocate(stack);
    throw;
  }
}

void pool::submit(job* j, cancel_scope* scope) {
  if (node* root = current_root()) {
    j->context = root;
    retain(root);
  }
  const fiber_state* f = tl_fiber;
  j->scope = retain(scope != nullptr ? scope : (f != nullptr ? f->scope : nullptr));
  if (tl_pool == this) {
    take_credit(*tl_slot);
    try {
      launch(j);
    } catch (...) {
      delete j;
      fiber_finished();
      throw;
    }
    return;
  }
  {
    std::unique_lock<std::mutex> g(inject_mutex_);
    if (closed_) {
      g.unlock();
      delete j;
      throw error(errc::executor_closed, "weft: executor '" + options_.name +
                                             "' is shut down; spawn/post/run from outside its "
                                             "fibers is refused");
    }
    live_.fetch_add(1, std::memory_order_relaxed);
    if (inject_tail_ != nullptr) {
      inject_tail_->next = j;
    } else {
      inject_head_ = j;
    }
    inject_tail_ = j;
    injected_.fetch_add(1, std::memory_order_seq_cst);
  }
  wake_sleeper(size());
}

void pool::take_credit(worker_slot& w) {
  std::size_t c = w.credit.load(std::memory_order_relaxed);
  if (c == 0) {
    live_.fetch_add(kCredit, std::memory_order_relaxed);
    c = kCredit;
  }
  w.credit.store(c - 1, std::memory_order_relaxed);
}

void pool::fiber_finished() noexcept {
  WEFT_ASSERT(tl_pool == this && tl_slot != nullptr, "a fiber finished off its pool's workers");
  worker_slot& w = *tl_slot;
  const std::size_t c = w.credit.load(std::memory_order_relaxed) + 1;
  if (c < 2 * kCredit) {
    w.credit.store(c, std::memory_order_relaxed);
    return;
  }
  w.credit.store(c - kCredit, std::memory_order_relaxed);
  return_live(kCredit);
}

void pool::give_back_credit(worker_slot& w) noexcept {
  const std::size_t c = w.credit.load(std::memory_order_relaxed);
  if (c == 0) return;
  w.credit.store(0, std::memory_order_relaxed);
  return_live(c);
}

void pool::return_live(std::size_t n) noexcept {
  // seq_cst: join() and orphan() read live_ and the closed/orphaned flags in the other order.
  const std::size_t before = live_.fetch_sub(n, std::memory_order_seq_cst);
  WEFT_ASSERT(before >= n, "more fibers finished than were started");
  if (before == n && closed_flag_.load(std::memory_order_seq_cst)) fiber_finished_last();
}

void pool::fiber_finished_last() noexcept {
  if (orphaned()) {
    // Nobody will join: the last fiber (or orphan(), if none is left) tells the workers to
    // exit. Only once: a worker may already be gone.
    if (exiting_.exchange(true, std::memory_order_seq_cst)) return;
    for (auto& w : workers_) {
      w->wake();
    }
    return;
  }
  std::lock_guard<spinlock> g(idle_lock_);
  wake_all(idle_waiters_);
}

void pool::orphan(executor* stand_in) noexcept {
  owner_.store(stand_in, std::memory_order_release);
  shutdown();
  for (auto& t : threads_) {
    t.detach();
  }
  orphaned_.store(true, std::memory_order_seq_cst);
  // The last fiber may have ended before orphaned_ was set: then nobody else will stop the
  // workers.
  if (live_.load(std::memory_order_seq_cst) == 0) fiber_finished_last();
}

void pool::shutdown() noexcept {
  std::lock_guard<std::mutex> g(inject_mutex_);
  closed_ = true;
  closed_flag_.store(true, std::memory_order_seq_cst);
}

void pool::join() {
  if (tl_pool == this) {
    throw error(errc::would_deadlock, "weft: executor::join() called from a fiber of executor '" +
                                          options_.name + "' itself; it would wait for itself");
  }
  shutdown();
  // A fiber of another executor waiting here is suspended, not its worker thread blocked.
  const wait_label label{"executor", &options_.name, "join"};
  const wait_mark mark(label);
  block(
      idle_lock_, idle_waiters_, [this] { return live_.load(std::memory_order_seq_cst) == 0; },
      nullptr, false);
  bool first = false;
  if (stopping_.compare_exchange_strong(first, true)) {
    stop_workers();
    std::lock_guard<spinlock> g(idle_lock_);
    joined_ = true;
    wake_all(idle_waiters_);
    return;
  }
  // Another join() is stopping the workers: wait until it is done.
  block(
      idle_lock_, idle_waiters_, [this] { return joined_; }, nullptr, false);
}

void pool::queue_from_outside(worker_slot& target, boost::fibers::context* ctx) noexcept {
  // Once queued, the fiber may run and end, and join() return and the executor go, while
  // this thread still wakes a worker (a plain thread's semaphore::release() crashed so under
  // MALLOC_PERTURB_). A unit of live_ held meanwhile keeps join() waiting until it is done;
  // the fiber's own unit makes live_ non-zero here.
  live_.fetch_add(1, std::memory_order_relaxed);
  push_ready(target, ctx, true);
  wake_for(size());
  return_live(1);
}

void pool::queue_to_run_next(worker_slot& target, boost::fibers::context* ctx) noexcept {
  push_run_next(target, ctx);
  // The target is likely busy and runs it at its next switch; if it computes instead, an idle
  // worker takes it (algorithm::take_stuck_run_next), and one must be awake or spinning to.
  wake_for(size());
}

void pool::wake_sleeper(unsigned except) noexcept {
  const unsigned n = size();
  // The watcher last: woken for work, it would leave the watch and wake another to take it.
  const worker_slot* watcher = watcher_.load(std::memory_order_relaxed);
  for (int pass = 0; pass < 2; ++pass) {
    for (unsigned i = 1; i <= n; ++i) {
      worker_slot& w = *workers_[(except + i) % n];
      if ((except + i) % n == except || (pass == 0 && &w == watcher)) continue;
      if (w.sleeping.load(std::memory_order_seq_cst) &&
          w.sleeping.exchange(false, std::memory_order_seq_cst)) {
        sleepers_.fetch_sub(1, std::memory_order_seq_cst);
        w.wake();
        return;
      }
    }
    if (watcher == nullptr) return;
  }
}

void pool::note_sleeping(worker_slot& w) noexcept {
  w.sleeping.store(true, std::memory_order_seq_cst);
  sleepers_.fetch_add(1, std::memory_order_seq_cst);
}

void pool::note_awake(worker_slot& w) noexcept {
  if (w.sleeping.exchange(false, std::memory_order_seq_cst)) {
    sleepers_.fetch_sub(1, std::memory_order_seq_cst);
  }
}

}  // namespace detail

// ---- executor --------------------------------------------------------------------------

executor::executor() : executor(executor_options{}) {}

executor::executor(unsigned threads)
    : executor([threads] {
        executor_options o;
        o.threads = threads;
        return o;
      }()) {}

executor::executor(executor_options options)
    : pool_(std::make_unique<detail::pool>(*this, detail::checked(std::move(options)))) {}

executor::executor(detail::pool* adopted) noexcept : pool_(adopted) {}

executor::~executor() {
  if (detail::tl_pool == pool_.get()) {
    // Destroyed from one of its own fibers: waiting here would wait for this very fiber.
    // A stand-in keeps the pool (and everything its fibers do with executor::current()) alive.
    detail::pool* p = pool_.release();
    // Out of memory, there is no stand-in: current() then says nullptr, nothing dangles.
    executor* stand_in = new (std::nothrow) executor(p);
    std::fprintf(stderr,
                 "weft: executor '%s' destroyed from one of its own fibers; its work finishes "
                 "and its threads exit without being joined\n",
                 p->name().c_str());
    p->orphan(stand_in);
    // Reachable from here, so leak checkers see it is kept on purpose.
    static std::mutex orphans_mutex;
    static std::vector<executor*>* orphans = nullptr;
    std::lock_guard<std::mutex> g(orphans_mutex);
    try {
      if (orphans == nullptr) orphans = new std::vector<executor*>;
      orphans->push_back(stand_in);
    } catch (...) {
      // Out of memory: the stand-in is merely not listed (a leak checker will name it).
    }
    return;
  }
  join();
}

void executor::submit(detail::job* j, detail::cancel_scope* scope) {
  pool_->submit(j, scope);
}

void executor::shutdown() noexcept {
  pool_->shutdown();
}

void executor::join() {
  pool_->join();
}

executor_stats executor::stats() const noexcept {
  return pool_->stats();
}

std::vector<worker_stats> executor::workers() const {
  std::vector<worker_stats> result;
  result.reserve(pool_->size());
  for (unsigned i = 0; i < pool_->size(); ++i)
    result.push_back(pool_->worker_counters(i));
  return result;
}

std::vector<fiber_info> executor::fibers() const {
  return pool_->fibers();
}

unsigned executor::thread_count() const noexcept {
  return pool_->size();
}

const std::string& executor::name() const noexcept {
  return pool_->name();
}

executor* executor::current() noexcept {
  // The fiber's record, not the thread: a worker thread also runs code outside its fibers
  // (Asio handlers, its main loop), and that code is no fiber of the executor.
  const detail::fiber_record* self = detail::current_record();
  return self != nullptr ? self->owner.owner() : nullptr;
}

}  // namespace weft
