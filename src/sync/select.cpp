// select.cpp: select over channel cases. As in Go's selectgo: lock every channel involved in
// one global order (by address), poll the cases in a random order and let the first ready one
// take effect; else link one waiting node per case, all sharing one wait_group, and park.
// Whoever fires the group first wins; the other nodes are skipped by their channels and
// unlinked by the waiter when it wakes.
#include <weft/select.hpp>

#include <algorithm>
#include <vector>

#include <weft/error.hpp>

namespace weft::detail {

void lock_all(channel_base* const* sorted, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i)
    sorted[i]->lock_.lock();
}

void unlock_all(channel_base* const* sorted, std::size_t n) noexcept {
  for (std::size_t i = n; i-- > 0;)
    sorted[i]->lock_.unlock();
}

namespace {

// small_array keeps up to 16 entries on the stack: a select rarely has more cases.
template <class T>
class small_array {
 public:
  explicit small_array(std::size_t n) {
    if (n > kInline) {
      heap_.resize(n);
      data_ = heap_.data();
    }
  }
  T* data() noexcept { return data_; }
  T& operator[](std::size_t i) noexcept { return data_[i]; }

 private:
  static constexpr std::size_t kInline = 16;
  T inline_[kInline];
  std::vector<T> heap_;
  T* data_ = inline_;
};

// channel_locks holds the locks of a select's distinct channels, taken in address order.
class channel_locks {
 public:
  channel_locks(select_case* const* cases, std::size_t n) : chans_(n) {
    for (std::size_t i = 0; i < n; ++i)
      chans_[i] = cases[i]->chan;
    std::sort(chans_.data(), chans_.data() + n);
    count_ =
        static_cast<std::size_t>(std::unique(chans_.data(), chans_.data() + n) - chans_.data());
  }
  void lock() noexcept { lock_all(chans_.data(), count_); }
  void unlock() noexcept { unlock_all(chans_.data(), count_); }

 private:
  small_array<channel_base*> chans_;
  std::size_t count_ = 0;
};

}  // namespace

std::optional<std::size_t> run_select(select_case* const* cases, std::size_t n, bool wait) {
  if (n == 0) throw error(errc::invalid_argument, "weft: select() needs at least one case");
  // A random order of polling, so that no ready case starves (Fisher-Yates).
  small_array<std::size_t> order(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t j = random_below(static_cast<unsigned>(i + 1));
    order[i] = order[j];
    order[j] = i;
  }
  channel_locks locks(cases, n);
  locks.lock();
  for (std::size_t k = 0; k < n; ++k) {
    select_case* c = cases[order[k]];
    wake_later woken;  // a waiter served by this case is woken once the locks are released
    switch (c->poll(woken)) {
      case select_case::result::done:
        locks.unlock();
        return order[k];
      case select_case::result::closed:
        locks.unlock();
        c->chan->throw_closed();
      case select_case::result::full:
        break;
    }
  }
  if (!wait) {
    locks.unlock();
    return std::nullopt;
  }
  try {
    refuse_wait_here("weft::select()");
  } catch (...) {
    locks.unlock();
    throw;
  }
  wait_group waiting({"select", nullptr, nullptr, n});
  for (std::size_t i = 0; i < n; ++i)
    cases[i]->enqueue(waiting, static_cast<int>(i));
  locks.unlock();
  const wait_end end = await(waiting, nullptr, true);
  locks.lock();
  for (std::size_t i = 0; i < n; ++i)
    cases[i]->dequeue();
  locks.unlock();
  if (end != wait_end::fired) throw_cancelled_here();
  const auto fired = static_cast<std::size_t>(waiting.fired_case());
  cases[fired]->finish();
  return fired;
}

}  // namespace weft::detail
