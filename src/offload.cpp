// offload.cpp: the blocking pool behind offload() -- on-demand threads -- and the wait of the
// fiber that offloads.
#include "blocking_pool.hpp"

#include <utility>

#include "fiber_record.hpp"
#include "pool.hpp"
#include "waiting.hpp"

namespace weft::detail {

blocking_pool::blocking_pool(unsigned max_threads, std::string name)
    : max_threads_(max_threads), name_(std::move(name)) {}

blocking_pool::~blocking_pool() {
  stop();
}

void blocking_pool::submit(offload_base* call) {
  join_exited();
  std::unique_lock<std::mutex> lk(mutex_);
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
  // A thread that was told of a call but has not woken yet is still counted idle: compare the
  // queue with the idle threads, so that a burst starts threads instead of piling up.
  if (queued_ <= idle_) {
    work_.notify_one();
    return;
  }
  if (threads_ >= max_threads_) return;  // it waits for a thread to be free
  auto self = running_.emplace(running_.end());
  try {
    // The new thread touches `self` only under mutex_, which this thread holds until the
    // handle is in place.
    *self = std::thread([this, self] { thread_main(self); });
    ++threads_;
  } catch (...) {
    running_.erase(self);
    if (threads_ > 0) return;  // a busy thread will take it
    // No thread at all: nobody will ever run the call.
    lk.unlock();
    withdraw(call);
    throw;
  }
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
        // Idle too long: leave, and let the next submit() or stop() join this thread.
        exited_.push_back(std::move(*self));
        running_.erase(self);
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
    call->invoke();
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
  std::vector<std::thread> done;
  {
    std::lock_guard<std::mutex> g(mutex_);
    if (exited_.empty()) return;
    done.swap(exited_);
  }
  for (auto& t : done)
    t.join();
}

void blocking_pool::stop() noexcept {
  std::list<std::thread> running;
  std::vector<std::thread> exited;
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

void run_offloaded(offload_base& call) {
  fiber_record* self = current_record();
  WEFT_ASSERT(self != nullptr, "offload() from a plain thread reached the blocking pool");
  blocking_pool& threads = self->owner.blocking;
  threads.submit(&call);
  auto finished = [&call] { return call.finished; };
  try {
    block(call.lock, call.waiters, finished, nullptr, true);
    return;
  } catch (...) {
    // Cancelled or out of time: before a thread took the call it is withdrawn and never runs;
    // after, it runs to the end and the caller sees its cancellation at its next
    // cancellation point.
    if (threads.withdraw(&call)) throw;
  }
  block(call.lock, call.waiters, finished, nullptr, false);
}

}  // namespace weft::detail
