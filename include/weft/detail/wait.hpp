// weft/detail/wait.hpp: the waiting core of channels, select, mutex, condition variable and
// semaphore -- how a fiber or thread waits for another to hand it something, so that the
// hand-over and a cancellation never both happen.
//
// A waiting operation is a wait_node linked into the wait_list of the object it waits on
// (a channel's senders or receivers, a mutex's queue...), under that object's lock. All the
// nodes of one waiting fiber -- one per case of a select -- share one wait_group, whose state
// says whether it is still waiting. Whoever hands over (a sender, close(), unlock(), notify,
// release) first claims the group (fire), then does the hand-over, then wakes the waiter
// (complete). A waiter that gives up -- cancelled, past its deadline or timeout -- claims the
// group the same way (give_up). One claim decides -- a compare-and-swap, or a plain check
// under the one lock every claim of the group holds (wait_group::decided_under): a value, a
// permit or a notification is either handed to this waiter or it stays for the next one; a
// hand-over that finds a group given up skips its node and serves the next (Go's selectDone;
// the waiter that gives up thereby passes its turn on).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include <weft/detail/spinlock.hpp>

namespace weft::detail {

struct waiter;

// wait_label says what a parked fiber waits for, for executor::fibers() ("channel jobs: recv",
// "select (3 cases)"). It lives in the waiting frame; name belongs to the object waited on.
struct wait_label {
  const char* kind = nullptr;         // "channel", "mutex", "select", "task", ...
  const std::string* name = nullptr;  // the object's name, if it has one
  const char* op = nullptr;           // "recv", "send", "lock", ...
  std::size_t cases = 0;              // select: the number of cases
};

// describe() is the label in words.
std::string describe(const wait_label& l);

// wait_group is one waiting fiber or thread.
struct wait_group {
  static constexpr int waiting = -1;
  static constexpr int gave_up = -2;

  // decided_under: the lock of the one object the group waits on, if every fire() and
  // give_up() of the group happens under it (a channel's send or recv); the two then need
  // no compare-and-swap (a ping-pong's hand-over spent a fifth of its time in that one).
  // nullptr for a group whose fire() may come under different locks (select).
  explicit wait_group(wait_label l, spinlock* decided_under = nullptr) noexcept;

  // fire() claims the group for case `index`; false if it fired already or gave up.
  bool fire(int index) noexcept {
    if (decided_under != nullptr) return decide(index);
    int expected = waiting;
    return state.compare_exchange_strong(expected, index, std::memory_order_acq_rel,
                                         std::memory_order_acquire);
  }
  // give_up() claims the group for the waiter itself; false if a hand-over came first. With
  // decided_under, the caller holds that lock.
  bool give_up() noexcept {
    if (decided_under != nullptr) return decide(gave_up);
    int expected = waiting;
    return state.compare_exchange_strong(expected, gave_up, std::memory_order_acq_rel,
                                         std::memory_order_acquire);
  }
  int fired_case() const noexcept { return state.load(std::memory_order_acquire); }

  std::atomic<int> state{waiting};
  // done is set by the one that fired the group once it no longer touches it: the waiter
  // (whose frame holds the group and its nodes) may leave only then.
  std::atomic<bool> done{false};
  waiter* who;  // the calling fiber's record or the calling thread's waiter
  wait_label label;
  spinlock* const decided_under;

 private:
  // decide() is fire() or give_up() under decided_under: only the waiter reads the state
  // without that lock, and it only waits for it to change.
  bool decide(int to) noexcept {
    if (state.load(std::memory_order_relaxed) != waiting) return false;
    state.store(to, std::memory_order_release);
    return true;
  }
};

// complete() wakes g's waiter after the hand-over; call it after a successful fire(), once
// the object that fired it is no longer touched (see wake_later): a woken waiter may destroy
// that object at once (a reply channel, a completion semaphore).
void complete(wait_group& g) noexcept;

// wait_node is one waiting operation: a recv, a send, a lock, one case of a select.
struct wait_node {
  wait_node(wait_group& g, int i) noexcept : group(&g), index(i) {}
  wait_node* prev = nullptr;
  wait_node* next = nullptr;
  wait_group* group;
  int index;            // the case reported when this node fires
  bool linked = false;  // in a wait_list (guarded by that list's lock)
  bool closed = false;  // fired by a channel's close(), not by a hand-over
};

// wait_list is a FIFO of nodes, guarded by the lock of the object that owns it.
class wait_list {
 public:
  bool empty() const noexcept { return head_ == nullptr; }
  void push_back(wait_node* n) noexcept {
    n->prev = tail_;
    n->next = nullptr;
    if (tail_ != nullptr) {
      tail_->next = n;
    } else {
      head_ = n;
    }
    tail_ = n;
    n->linked = true;
  }
  void push_front(wait_node* n) noexcept {
    n->prev = nullptr;
    n->next = head_;
    if (head_ != nullptr) {
      head_->prev = n;
    } else {
      tail_ = n;
    }
    head_ = n;
    n->linked = true;
  }
  // remove() unlinks n if it is still linked.
  void remove(wait_node* n) noexcept {
    if (!n->linked) return;
    (n->prev != nullptr ? n->prev->next : head_) = n->next;
    (n->next != nullptr ? n->next->prev : tail_) = n->prev;
    n->prev = n->next = nullptr;
    n->linked = false;
  }
  // claim() unlinks and fires the first node whose group still waits; nodes of groups that
  // fired elsewhere or gave up are dropped on the way. nullptr if none waits.
  wait_node* claim() noexcept {
    while (wait_node* n = head_) {
      remove(n);
      if (n->group->fire(n->index)) return n;
    }
    return nullptr;
  }

 private:
  wait_node* head_ = nullptr;
  wait_node* tail_ = nullptr;
};

// wake_later holds the nodes a hand-over fired under an object's lock and completes them when
// it goes out of scope. Declared before the lock guard, it runs after the guard released the
// lock -- the hand-over's last touch of the object.
class wake_later {
 public:
  wake_later() noexcept = default;
  wake_later(const wake_later&) = delete;
  wake_later& operator=(const wake_later&) = delete;
  ~wake_later() { run(); }

  void add(wait_node* n) noexcept {
    n->next = head_;  // n was unlinked by claim(): its link is free
    head_ = n;
  }
  void run() noexcept {
    while (wait_node* n = head_) {
      head_ = n->next;  // read before complete(): the node dies with the waiter's frame
      complete(*n->group);
    }
  }

 private:
  wait_node* head_ = nullptr;
};

// wait_end is how await() returned.
enum class wait_end { fired, timed_out, cancelled };

// await() blocks the caller -- suspends a pool fiber, blocks a plain thread -- until g fires,
// `until` passes (nullptr: never) or, if cancellable, the caller is cancelled or its deadline
// passes (when that deadline comes before `until`). On timed_out and cancelled the group was
// given up: the caller unlinks its nodes under their lock, then returns false or calls
// throw_cancelled_here(). On fired the hand-over is complete.
wait_end await(wait_group& g, const std::chrono::steady_clock::time_point* until, bool cancellable);

// refuse_wait_here() throws weft::error(would_deadlock) when the caller is an Asio handler (or
// other code outside a fiber) on a worker thread: a wait there would block the worker and the
// fibers that could end it. Called before a wait links anything. `what` names the operation.
void refuse_wait_here(const char* what);

// throw_cancelled_here() throws what a cancellation point of the caller raises now:
// weft::error(cancelled) or weft::error(deadline_exceeded).
[[noreturn]] void throw_cancelled_here();

// identity is who owns a mutex: the calling fiber, or plain thread. The serial tells apart
// fibers (and threads) that reuse the same record (or thread-local) address one after another.
struct identity {
  const void* who = nullptr;
  std::uint64_t serial = 0;
  friend bool operator==(const identity&, const identity&) = default;
};
identity caller_identity() noexcept;

// random_below() is a cheap per-thread random number in [0, n) (select's case order).
unsigned random_below(unsigned n) noexcept;

}  // namespace weft::detail
