// offload.cpp: the blocking pool behind offload() -- on-demand threads -- and the wait of the
// fiber that offloads.
#include "sched/blocking_pool.hpp"

#include <utility>

#include "sched/fiber_record.hpp"
#include "sched/pool.hpp"
#include "sched/waiting.hpp"

namespace weft::detail {

namespace {

// call_record is what an offloaded call runs as on its blocking thread: a record of its own,
// as a fiber has, so that fiber_local values made in the call are the call's -- not the
// thread's, which every call that runs there would share (one request reading the last one's
// values) -- and go when it returns. Its context is the caller's, copied.
class call_record final : public fiber_state {
 public:
  explicit call_record(offload_base& call) noexcept : owner_(call.owner) {
    own.root = std::exchange(call.context, nullptr);
  }
  // A throwing destructor of the call's values goes where its caller's would.
  void report_unhandled(std::exception_ptr e) noexcept override {
    detail::report_unhandled(*owner_, std::move(e));
  }

 private:
  pool* owner_;
};

// run_call() makes the call as its own record, then destroys the call's fiber_local values and
// its context -- before the caller hears that it finished, so that it sees their effects.
void run_call(offload_base& call) noexcept {
  fiber_state* const thread_fiber = tl_fiber;
  context_state* const thread_context = tl_context;
  const node* const thread_root = tl_root;
  {
    call_record record(call);
    tl_fiber = &record;
    tl_context = record.current;
    publish_root(record.own.root);
    call.invoke();
    record.end();  // while it is still the current record: destructors see its context
  }
  tl_fiber = thread_fiber;
  tl_context = thread_context;
  tl_root = thread_root;
}

}  // namespace

blocking_pool::blocking_pool(unsigned max_threads, std::string name)
    : max_threads_(max_threads), name_(std::move(name)) {}

blocking_pool::~blocking_pool() {
  stop();
}

void blocking_pool::submit(offload_base* call) {
  join_exited();
  std::unique_lock<std::mutex> lk(mutex_);
  // A thread that was told of a call but has not woken yet is still counted idle: compare the
  // queue with the idle threads, so that a burst starts threads instead of piling up.
  if (queued_ + 1 > idle_ && threads_ < max_threads_) {
    // Everything that can fail comes before the call is queued: once queued, a thread may run
    // it, so an exception from here on would leave it queued while its caller's frame goes.
    try {
      auto self = running_.emplace(running_.end());
      try {
        // The new thread touches `self` only under mutex_, which this thread holds until the
        // handle is in place.
        *self = std::thread([this, self] { thread_main(self); });
      } catch (...) {
        running_.erase(self);
        throw;
      }
      ++threads_;
    } catch (...) {
      if (threads_ == 0) throw;  // no thread at all: nobody would ever run the call
      // A busy thread will take it.
    }
  }
  call->next = nullptr;
  call->queued = true;
  if (tail_ != nullptr) {
    tail_->next = call;
  } else {
    head_ = call;
  }
  tail_ = call;
  ++queued_;
  queued_hint_.store(queued_, std::memory_order_release);
  if (queued_ <= idle_) work_.notify_one();
}

bool blocking_pool::withdraw(offload_base* call) noexcept {
  std::lock_guard<std::mutex> g(mutex_);
  if (!call->queued) return false;
  offload_base* prev = nullptr;
  for (offload_base* c = head_; c != nullptr; prev = c, c = c->next) {
    if (c != call) continue;
    (prev != nullptr ? prev->next : head_) = c->next;
    if (tail_ == c) tail_ = prev;
    break;
  }
  call->queued = false;
  --queued_;
  queued_hint_.store(queued_, std::memory_order_release);
  return true;
}

void blocking_pool::thread_main(std::list<std::thread>::iterator self) {
  std::unique_lock<std::mutex> lk(mutex_);
  for (;;) {
    if (head_ == nullptr) {
      if (stopping_) break;
      ++idle_;
      // Spin a little first: a fiber that offloads in a loop hands over its next call within
      // microseconds, and then neither side pays for a futex wake-up.
      lk.unlock();
      const auto spin_until = std::chrono::steady_clock::now() + spin_before_sleep;
      for (unsigned spin = 1; queued_hint_.load(std::memory_order_acquire) == 0; ++spin) {
        spin_pause();
        if (spin % 64 == 0 && std::chrono::steady_clock::now() >= spin_until) break;
      }
      lk.lock();
      const bool woken =
          work_.wait_for(lk, idle_exit, [this] { return head_ != nullptr || stopping_; });
      --idle_;
      if (!woken && !stopping_) {
        // Idle too long: leave, and let the next submit() or stop() join this thread. Its
        // list node moves over as it is: leaving needs no memory.
        exited_.splice(exited_.end(), running_, self);
        --threads_;
        return;
      }
      continue;
    }
    offload_base* call = head_;
    head_ = call->next;
    if (head_ == nullptr) tail_ = nullptr;
    call->queued = false;
    --queued_;
    queued_hint_.store(queued_, std::memory_order_release);
    lk.unlock();
    run_call(*call);
    {
      // After this block the call may be gone: its caller returns as soon as it sees finished.
      std::lock_guard<spinlock> g(call->lock);
      call->finished = true;
      wake_all(call->waiters);
    }
    lk.lock();
  }
  --threads_;
}

void blocking_pool::join_exited() noexcept {
  std::list<std::thread> done;
  {
    std::lock_guard<std::mutex> g(mutex_);
    if (exited_.empty()) return;
    done.splice(done.end(), exited_);
  }
  for (auto& t : done)
    t.join();
}

void blocking_pool::stop() noexcept {
  std::list<std::thread> running;
  std::list<std::thread> exited;
  {
    std::lock_guard<std::mutex> g(mutex_);
    WEFT_ASSERT(head_ == nullptr, "a blocking pool stopped with offloaded calls queued");
    stopping_ = true;
    running.swap(running_);
    exited.swap(exited_);
  }
  work_.notify_all();
  for (auto& t : running)
    t.join();
  for (auto& t : exited)
    t.join();
}

unsigned blocking_pool::threads() const noexcept {
  std::lock_guard<std::mutex> g(mutex_);
  return threads_;
}

unsigned blocking_pool::busy() const noexcept {
  std::lock_guard<std::mutex> g(mutex_);
  return threads_ - idle_;
}

bool offload_from_fiber() {
  if (current_record() != nullptr) return true;
  refuse_wait_on_worker("offload()");
  return false;
}

void run_offloaded(offload_base& call) {
  fiber_record* self = current_record();
  WEFT_ASSERT(self != nullptr, "offload() from a plain thread reached the blocking pool");
  blocking_pool& threads = self->owner.blocking;
  call.owner = &self->owner;
  call.context = current_root();
  if (call.context != nullptr) retain(call.context);
  try {
    threads.submit(&call);
  } catch (...) {
    release(std::exchange(call.context, nullptr));
    throw;
  }
  auto finished = [&call] { return call.finished; };
  static const wait_label label{"offload", nullptr, nullptr};
  const wait_mark mark(label);
  try {
    block(call.lock, call.waiters, finished, nullptr, true);
    return;
  } catch (...) {
    // Cancelled or out of time: before a thread took the call it is withdrawn and never runs;
    // after, it runs to the end and the caller sees its cancellation at its next
    // cancellation point.
    if (threads.withdraw(&call)) {
      release(std::exchange(call.context, nullptr));  // no thread took it over
      throw;
    }
  }
  block(call.lock, call.waiters, finished, nullptr, false);
}

}  // namespace weft::detail
