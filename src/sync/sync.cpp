// sync.cpp: weft::mutex, condition_variable and semaphore over the waiting core of
// weft/detail/wait.hpp.
#include <weft/sync.hpp>

#include <limits>

#include <weft/detail/assert.hpp>
#include <weft/error.hpp>

namespace weft {

namespace {

using clock = std::chrono::steady_clock;

// A fiber that finds the mutex held spins this many times before it queues: the holder may
// be running on another worker and about to unlock, and a park costs two switches.
constexpr int kLockSpins = 64;
// A waiter that waited this long gets the mutex handed to it directly, instead of competing
// with fibers that arrive meanwhile (which may otherwise always win).
constexpr auto kHandOffAfter = std::chrono::milliseconds(1);

struct mutex_node : detail::wait_node {
  mutex_node(detail::wait_group& g, detail::identity w) noexcept
      : detail::wait_node(g, 0), who(w), since(clock::now()) {}
  detail::identity who;
  clock::time_point since;  // when it first queued
  bool handed = false;      // unlock() made it the holder
};

std::string quoted(const char* what, const std::string& name) {
  return name.empty() ? std::string(what) : std::string(what) + " '" + name + "'";
}

}  // namespace

// ---- mutex --------------------------------------------------------------------------------

mutex::~mutex() {
  WEFT_ASSERT(waiters_.empty(), "a weft::mutex was destroyed while fibers wait for it");
}

bool mutex::try_lock() noexcept {
  unsigned s = state_.load(std::memory_order_relaxed);
  while ((s & kLocked) == 0) {
    if (state_.compare_exchange_weak(s, s | kLocked, std::memory_order_acquire,
                                     std::memory_order_relaxed)) {
      const detail::identity me = detail::caller_identity();
      owner_.store(me.who, std::memory_order_relaxed);
      owner_serial_.store(me.serial, std::memory_order_relaxed);
      return true;
    }
  }
  return false;
}

bool mutex::lock_slow(const clock::time_point* until) {
  for (int i = 0; i < kLockSpins; ++i) {
    detail::spin_pause();
    if ((state_.load(std::memory_order_relaxed) & kLocked) == 0 && try_lock()) return true;
  }
  detail::refuse_wait_here("weft::mutex::lock()");
  const detail::identity me = detail::caller_identity();
  detail::wait_group waiting({"mutex", &name_, "lock"});
  mutex_node n(waiting, me);
  bool again = false;  // woken once and beaten to it: wait at the front this time
  for (;;) {
    {
      std::lock_guard<detail::spinlock> g(lock_);
      // A woken waiter's try ends the unlock()s' wait for it: whatever its outcome, the next
      // unlock() may wake again.
      const unsigned clear = again ? kWoken : 0;
      unsigned s = state_.load(std::memory_order_relaxed);
      for (;;) {
        if ((s & kLocked) == 0) {
          if (state_.compare_exchange_weak(s, (s | kLocked) & ~clear, std::memory_order_acquire,
                                           std::memory_order_relaxed)) {
            owner_.store(me.who, std::memory_order_relaxed);
            owner_serial_.store(me.serial, std::memory_order_relaxed);
            return true;
          }
        } else {
          const unsigned want = (s | kWaiters) & ~clear;
          if (want == s || state_.compare_exchange_weak(s, want, std::memory_order_relaxed,
                                                        std::memory_order_relaxed)) {
            break;  // held, and its unlock() will look at the queue
          }
        }
      }
      if (again) {
        waiters_.push_front(&n);
      } else {
        waiters_.push_back(&n);
      }
    }
    if (detail::await(waiting, until, false) == detail::wait_end::fired) {
      if (n.handed) return true;
      // Woken to compete: try again. The group is ours again (its waker is done with it).
      waiting.state.store(detail::wait_group::waiting, std::memory_order_relaxed);
      waiting.done.store(false, std::memory_order_relaxed);
      again = true;
      continue;
    }
    std::lock_guard<detail::spinlock> g(lock_);
    waiters_.remove(&n);
    if (waiters_.empty()) state_.fetch_and(~kWaiters, std::memory_order_relaxed);
    return false;
  }
}

void mutex::unlock() {
  const detail::identity me = detail::caller_identity();
  if (owner_.load(std::memory_order_relaxed) != me.who ||
      owner_serial_.load(std::memory_order_relaxed) != me.serial) {
    throw error(errc::invalid_argument, "weft: unlock() of " + quoted("mutex", name_) +
                                            " by a fiber or thread that does not hold it");
  }
  owner_.store(nullptr, std::memory_order_relaxed);
  owner_serial_.store(0, std::memory_order_relaxed);
  unsigned s = kLocked;
  if (state_.compare_exchange_strong(s, 0, std::memory_order_release, std::memory_order_relaxed))
    return;
  // A woken waiter is on its way: it competes for the mutex, nobody else is woken.
  while ((s & kWoken) != 0) {
    if (state_.compare_exchange_weak(s, s & ~kLocked, std::memory_order_release,
                                     std::memory_order_relaxed)) {
      return;
    }
  }
  detail::wake_later woken;  // after lock_ is released: the new holder may destroy *this
  std::lock_guard<detail::spinlock> g(lock_);
  // Held by the caller, with no waiter woken: nobody else changes state_ until the store
  // below (the bits besides kLocked change under lock_).
  auto* n = static_cast<mutex_node*>(waiters_.claim());
  const unsigned rest = waiters_.empty() ? 0 : kWaiters;
  if (n == nullptr) {
    state_.store(rest, std::memory_order_release);
    return;
  }
  if (clock::now() - n->since >= kHandOffAfter) {
    n->handed = true;
    owner_.store(n->who.who, std::memory_order_relaxed);
    owner_serial_.store(n->who.serial, std::memory_order_relaxed);
    state_.store(kLocked | rest, std::memory_order_relaxed);
  } else {
    state_.store(rest | kWoken, std::memory_order_release);
  }
  woken.add(n);
}

// ---- condition_variable -------------------------------------------------------------------

condition_variable::~condition_variable() {
  WEFT_ASSERT(waiters_.empty(), "a weft::condition_variable was destroyed while fibers wait on it");
}

void condition_variable::notify_one() noexcept {
  detail::wake_later woken;  // after lock_ is released: a woken waiter may destroy *this
  std::lock_guard<detail::spinlock> g(lock_);
  if (detail::wait_node* n = waiters_.claim()) woken.add(n);
}

void condition_variable::notify_all() noexcept {
  detail::wake_later woken;
  std::lock_guard<detail::spinlock> g(lock_);
  while (detail::wait_node* n = waiters_.claim())
    woken.add(n);
}

bool condition_variable::wait_impl(std::unique_lock<mutex>& lk, const clock::time_point* until) {
  if (!lk.owns_lock()) {
    throw error(errc::invalid_argument, "weft: wait on " + quoted("condition_variable", name_) +
                                            " with a unique_lock that does not hold its mutex");
  }
  detail::refuse_wait_here("weft::condition_variable::wait()");
  detail::wait_group waiting({"condition_variable", &name_, "wait"});
  detail::wait_node n(waiting, 0);
  {
    // Linked before the mutex is let go: a notifier that takes the mutex after us sees us.
    std::lock_guard<detail::spinlock> g(lock_);
    waiters_.push_back(&n);
  }
  try {
    lk.unlock();  // throws if the caller does not hold the mutex after all
  } catch (...) {
    bool notified;
    {
      std::lock_guard<detail::spinlock> g(lock_);
      notified = !n.linked || !waiting.give_up();
      waiters_.remove(&n);
    }
    if (notified) {
      // A notification claimed this wait meanwhile: let its notifier finish with the node,
      // then pass the notification on -- this wait never happened.
      detail::await(waiting, nullptr, false);
      notify_one();
    }
    throw;
  }
  const detail::wait_end end = detail::await(waiting, until, true);
  if (end != detail::wait_end::fired) {
    std::lock_guard<detail::spinlock> g(lock_);
    waiters_.remove(&n);
  }
  lk.lock();
  if (end == detail::wait_end::cancelled) detail::throw_cancelled_here();
  return end == detail::wait_end::fired;
}

// ---- semaphore ----------------------------------------------------------------------------

semaphore::semaphore(std::ptrdiff_t initial, std::string name)
    : count_(initial), name_(std::move(name)) {
  if (initial < 0) {
    throw error(errc::invalid_argument, "weft: " + quoted("semaphore", name_) +
                                            " made with a negative count (" +
                                            std::to_string(initial) + ")");
  }
}

semaphore::~semaphore() {
  WEFT_ASSERT(waiters_.empty(), "a weft::semaphore was destroyed while fibers wait on it");
}

bool semaphore::try_acquire() noexcept {
  std::lock_guard<detail::spinlock> g(lock_);
  if (count_ == 0) return false;
  --count_;
  return true;
}

bool semaphore::acquire_until(const clock::time_point* until) {
  std::unique_lock<detail::spinlock> g(lock_);
  // Permits are handed to waiters as they are released, so a free permit means nobody waits.
  if (count_ != 0) {
    --count_;
    return true;
  }
  detail::refuse_wait_here("weft::semaphore::acquire()");
  detail::wait_group waiting({"semaphore", &name_, "acquire"});
  detail::wait_node n(waiting, 0);
  waiters_.push_back(&n);
  g.unlock();
  const detail::wait_end end = detail::await(waiting, until, true);
  if (end == detail::wait_end::fired) return true;
  g.lock();
  waiters_.remove(&n);
  g.unlock();
  if (end == detail::wait_end::cancelled) detail::throw_cancelled_here();
  return false;
}

void semaphore::release(std::ptrdiff_t n) {
  if (n < 1) {
    throw error(errc::invalid_argument, "weft: release(" + std::to_string(n) + ") of " +
                                            quoted("semaphore", name_) + ": n must be >= 1");
  }
  detail::wake_later woken;  // after lock_ is released: a woken waiter may destroy *this
  std::lock_guard<detail::spinlock> g(lock_);
  // Waiters exist only while count_ is 0, so this can fail only when nobody waits.
  if (count_ > std::numeric_limits<std::ptrdiff_t>::max() - n) {
    throw error(errc::invalid_argument, "weft: release(" + std::to_string(n) + ") of " +
                                            quoted("semaphore", name_) +
                                            " would overflow its count");
  }
  for (; n > 0; --n) {
    detail::wait_node* w = waiters_.claim();
    if (w == nullptr) break;
    woken.add(w);
  }
  count_ += n;
}

std::ptrdiff_t semaphore::available() const noexcept {
  std::lock_guard<detail::spinlock> g(lock_);
  return count_;
}

}  // namespace weft
