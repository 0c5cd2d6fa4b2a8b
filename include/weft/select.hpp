// weft/select.hpp: select / try_select -- wait on several channel operations at once, and
// let exactly one of them take effect (Go's select statement).
//
//   std::optional<job> j;
//   switch (weft::select(weft::recv_case(jobs, j), weft::recv_case(urgent, j),
//                        weft::send_case(results, r))) { case 0: ... }
//
// A timeout is a deadline: weft::with_timeout(100ms, [&] { return weft::select(...); }).
#pragma once

#include <cstddef>
#include <optional>
#include <type_traits>
#include <utility>

#include <weft/channel.hpp>

namespace weft {
namespace detail {

// select_case is one case of a select, seen without its type. Every function but finish() is
// called with the case's channel locked.
class select_case {
 public:
  explicit select_case(channel_base* c) noexcept : chan(c) {}
  select_case(const select_case&) = delete;
  select_case& operator=(const select_case&) = delete;

  // poll() takes effect now if it can: done; full when it cannot; closed for a send on a
  // closed channel (the select then throws channel_closed). A waiter it served goes to woken.
  enum class result { done, full, closed };
  virtual result poll(wake_later& woken) noexcept = 0;
  // enqueue() links the case into its channel's waiters as case `index` of g.
  virtual void enqueue(wait_group& g, int index) noexcept = 0;
  // dequeue() unlinks it, if a hand-over did not already.
  virtual void dequeue() noexcept = 0;
  // finish() is run, unlocked, on the case that fired: it throws channel_closed for a send
  // whose channel was closed meanwhile.
  virtual void finish() = 0;

  channel_base* const chan;

 protected:
  ~select_case() = default;
};

// run_select() is select (wait) and try_select (!wait) over n cases.
std::optional<std::size_t> run_select(select_case* const* cases, std::size_t n, bool wait);

template <class T>
class recv_case_t final : public select_case {
 public:
  recv_case_t(channel<T>& ch, std::optional<T>& out) noexcept
      : select_case(&ch), ch_(ch), out_(out) {}
  result poll(wake_later& woken) noexcept override {
    return ch_.try_recv_locked(out_, woken) ? result::done : result::full;
  }
  void enqueue(wait_group& g, int index) noexcept override {
    node_.emplace(g, index, &out_);
    ch_.receivers_.push_back(&*node_);
  }
  void dequeue() noexcept override {
    if (node_) ch_.receivers_.remove(&*node_);
  }
  void finish() override {
    if (node_->closed) out_.reset();
  }

 private:
  channel<T>& ch_;
  std::optional<T>& out_;
  std::optional<recv_node<T>> node_;
};

template <class T, class U>
class send_case_t final : public select_case {
  // An rvalue T is moved from only when this case is the one that takes effect; anything else
  // is first copied (or converted) into a T of the case's own, so v stays untouched.
  static constexpr bool by_move = std::is_same_v<std::remove_cvref_t<U>, T> &&
                                  !std::is_lvalue_reference_v<U> &&
                                  !std::is_const_v<std::remove_reference_t<U>>;

 public:
  send_case_t(channel<T>& ch, U&& v) : select_case(&ch), ch_(ch) {
    if constexpr (by_move) {
      source_ = &v;
    } else {
      own_.emplace(std::as_const(v));
      source_ = &*own_;
    }
  }
  result poll(wake_later& woken) noexcept override {
    switch (ch_.try_send_locked(*source_, woken)) {
      case channel<T>::sent::done:
        return result::done;
      case channel<T>::sent::closed:
        return result::closed;
      default:
        return result::full;
    }
  }
  void enqueue(wait_group& g, int index) noexcept override {
    node_.emplace(g, index, source_);
    ch_.senders_.push_back(&*node_);
  }
  void dequeue() noexcept override {
    if (node_) ch_.senders_.remove(&*node_);
  }
  void finish() override {
    if (node_->closed) ch_.throw_closed();
  }

 private:
  channel<T>& ch_;
  T* source_ = nullptr;
  std::optional<T> own_;
  std::optional<send_node<T>> node_;
};

template <class... Cases>
std::optional<std::size_t> select_over(bool wait, Cases&... cases) {
  if constexpr (sizeof...(Cases) == 0) {
    return run_select(nullptr, 0, wait);
  } else {
    select_case* all[] = {&cases...};
    return run_select(all, sizeof...(Cases), wait);
  }
}

}  // namespace detail

// recv_case(ch, out) is a case that fires when a value can be received from ch (out = the
// value) or ch is closed and drained (out = nullopt).
template <class T>
detail::recv_case_t<T> recv_case(channel<T>& ch, std::optional<T>& out) noexcept {
  return detail::recv_case_t<T>(ch, out);
}

// send_case(ch, v) is a case that fires when v was sent on ch. A send_case that does not take
// effect leaves v untouched. A send_case on a closed channel counts as ready; if it is the
// one chosen, select throws errc::channel_closed.
template <class T, class U>
detail::send_case_t<T, U&&> send_case(channel<T>& ch, U&& v) {
  return detail::send_case_t<T, U&&>(ch, std::forward<U>(v));
}

// select() waits until one of the cases can take effect, makes exactly that one take effect,
// and returns its index (0-based, in argument order). When several are ready, one is chosen
// at random, so none starves. A cancellation point with the exactly-once rule of channels:
// cancelled or past its deadline while waiting, it throws errc::cancelled / deadline_exceeded
// and no case took effect. The same channel may appear in several cases. No cases at all is
// a misuse (errc::invalid_argument).
template <class... Cases>
std::size_t select(Cases&&... cases) {
  return *detail::select_over(true, cases...);
}

// try_select() is select() without waiting: the index of the case that took effect, or
// nullopt if none could now.
template <class... Cases>
std::optional<std::size_t> try_select(Cases&&... cases) {
  return detail::select_over(false, cases...);
}

}  // namespace weft
