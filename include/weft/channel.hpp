// weft/channel.hpp: channel<T>, a FIFO queue between fibers (and plain threads): unbuffered
// (a rendezvous) or bounded, many senders and many receivers, closable. Its waits are
// cancellation points that never lose or duplicate a value (docs/sync.md).
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include <weft/detail/spinlock.hpp>
#include <weft/detail/wait.hpp>

namespace weft {

template <class T>
class channel;

namespace detail {

template <class T>
class recv_case_t;
template <class T, class U>
class send_case_t;

// channel_base is the untyped part of every channel: its lock, its queues of waiting
// receivers and senders, and closing.
class channel_base {
 public:
  channel_base(const channel_base&) = delete;
  channel_base& operator=(const channel_base&) = delete;

  void close() noexcept;
  bool closed() const noexcept;
  const std::string& name() const noexcept { return name_; }
  std::size_t capacity() const noexcept { return capacity_; }
  // throw_closed() throws weft::error(channel_closed) naming the channel.
  [[noreturn]] void throw_closed() const;

 protected:
  channel_base(std::size_t capacity, std::string name);
  ~channel_base();

  enum class sent { done, full, closed };

  mutable spinlock lock_;  // guards everything below and the typed channel's buffer
  wait_list receivers_;    // recv_node<T>: waiting receivers (only while nothing is buffered)
  wait_list senders_;      // send_node<T>: waiting senders (only while the buffer is full)
  bool closed_ = false;
  const std::size_t capacity_;
  const std::string name_;

  friend void lock_all(channel_base* const* sorted, std::size_t n) noexcept;
  friend void unlock_all(channel_base* const* sorted, std::size_t n) noexcept;
};

// recv_node is a waiting receiver: a sender (or a receiver that frees buffer room) moves the
// value straight into *out.
template <class T>
struct recv_node : wait_node {
  recv_node(wait_group& g, int i, std::optional<T>* o) noexcept : wait_node(g, i), out(o) {}
  std::optional<T>* out;
};

// send_node is a waiting sender: the receiver that takes its value moves it out of *source.
template <class T>
struct send_node : wait_node {
  send_node(wait_group& g, int i, T* s) noexcept : wait_node(g, i), source(s) {}
  T* source;
};

}  // namespace detail

// channel<T> passes values of type T from senders to receivers, first in first out. With
// capacity 0 it is unbuffered: a send waits until a receiver takes the value. Otherwise up to
// `capacity` values wait in the channel and a send waits only while it is full. Waiting
// senders and receivers are each served in the order they started waiting. Any fiber of any
// executor, and any plain thread, may use a channel; a wait suspends only the calling fiber
// (its worker runs others) and blocks a plain thread.
//
// T's move constructor must not throw: a value changes hands under the channel's lock, where
// a hand-over that fails halfway would lose it.
template <class T>
class channel : public detail::channel_base {
  static_assert(std::is_nothrow_move_constructible_v<T>,
                "weft::channel<T>: T must be nothrow move constructible");
  static_assert(!std::is_reference_v<T> && !std::is_const_v<T>,
                "weft::channel<T>: T must be a non-const object type");

 public:
  // channel(capacity, name) is an open, empty channel; 0 is unbuffered. The name shows in
  // executor::dump() ("channel jobs: recv") and in error messages.
  explicit channel(std::size_t capacity = 0, std::string name = {})
      : detail::channel_base(capacity, std::move(name)),
        buffer_(capacity != 0 ? std::allocator<T>().allocate(capacity) : nullptr) {}

  // ~channel() destroys the values still buffered. Nobody may use or wait on the channel any
  // more (destroying it with waiters is a misuse).
  ~channel() {
    while (count_ != 0)
      pop();
    if (buffer_ != nullptr) std::allocator<T>().deallocate(buffer_, capacity_);
  }

  // send() puts v in the channel: at once if a receiver waits or there is room, else it waits
  // (unbuffered: until a receiver takes v). A cancellation point: cancelled or past its
  // deadline while waiting, it throws errc::cancelled / deadline_exceeded and v was not sent.
  // On a closed channel -- also one closed while it waits -- it throws errc::channel_closed.
  void send(T v) {
    detail::wake_later woken;  // after the lock is released: the waiter may destroy *this
    std::unique_lock<detail::spinlock> g(lock_);
    const sent r = try_send_locked(v, woken);
    if (r == sent::done) return;
    if (r == sent::closed) {
      g.unlock();
      throw_closed();
    }
    detail::refuse_wait_here("weft::channel::send()");
    detail::wait_group waiting({"channel", &name_, "send"}, &lock_);
    detail::send_node<T> n(waiting, 0, &v);
    senders_.push_back(&n);
    g.unlock();
    if (detail::await(waiting, nullptr, true) == detail::wait_end::fired) {
      if (n.closed) throw_closed();
      return;
    }
    g.lock();
    senders_.remove(&n);
    g.unlock();
    detail::throw_cancelled_here();
  }

  // recv() takes the oldest value, waiting while there is none. nullopt once the channel is
  // closed and every buffered value was received. A cancellation point: cancelled or past its
  // deadline while waiting, it throws errc::cancelled / deadline_exceeded and took nothing
  // (the value stays for another receiver). A value handed to it before the cancellation won
  // is returned; the cancellation then shows at the fiber's next cancellation point.
  std::optional<T> recv() {
    std::optional<T> out;
    detail::wake_later woken;
    std::unique_lock<detail::spinlock> g(lock_);
    if (try_recv_locked(out, woken)) return out;
    detail::refuse_wait_here("weft::channel::recv()");
    detail::wait_group waiting({"channel", &name_, "recv"}, &lock_);
    detail::recv_node<T> n(waiting, 0, &out);
    receivers_.push_back(&n);
    g.unlock();
    if (detail::await(waiting, nullptr, true) == detail::wait_end::fired) return out;
    g.lock();
    receivers_.remove(&n);
    g.unlock();
    detail::throw_cancelled_here();
  }

  // try_send() sends v if that can happen now: a receiver waits (also a waiting select) or
  // there is room. Never waits; false, with v untouched, if the channel is full or closed.
  template <class U>
  bool try_send(U&& v) {
    if constexpr (std::is_same_v<std::remove_cvref_t<U>, T> && !std::is_lvalue_reference_v<U> &&
                  !std::is_const_v<std::remove_reference_t<U>>) {
      detail::wake_later woken;
      std::lock_guard<detail::spinlock> g(lock_);
      return try_send_locked(v, woken) == sent::done;  // moved from only when sent
    } else {
      T copy(std::as_const(v));  // made before the lock: a throwing copy loses nothing
      detail::wake_later woken;
      std::lock_guard<detail::spinlock> g(lock_);
      return try_send_locked(copy, woken) == sent::done;
    }
  }

  // try_recv() takes the oldest value if there is one now -- on an unbuffered channel, the
  // value of a waiting sender. Never waits; nullopt if there is none (or it is closed).
  std::optional<T> try_recv() {
    std::optional<T> out;
    {
      detail::wake_later woken;
      std::lock_guard<detail::spinlock> g(lock_);
      try_recv_locked(out, woken);
    }
    return out;
  }

  // size() is the number of values buffered now.
  std::size_t size() const noexcept {
    std::lock_guard<detail::spinlock> g(lock_);
    return count_;
  }

  // close(), closed(), capacity(), name(): see channel_base. close() is idempotent and wakes
  // every waiter: senders throw channel_closed, receivers get the buffered values, then nullopt.
  using detail::channel_base::capacity;
  using detail::channel_base::close;
  using detail::channel_base::closed;
  using detail::channel_base::name;

 private:
  template <class>
  friend class detail::recv_case_t;
  template <class, class>
  friend class detail::send_case_t;

  // try_send_locked() hands v to a waiting receiver or buffers it; v is moved from only when
  // the result is done. A receiver handed v is woken through `woken`, after the lock.
  sent try_send_locked(T& v, detail::wake_later& woken) noexcept {
    if (closed_) return sent::closed;
    if (detail::wait_node* r = receivers_.claim()) {  // only while nothing is buffered
      static_cast<detail::recv_node<T>*>(r)->out->emplace(std::move(v));
      woken.add(r);
      return sent::done;
    }
    if (count_ == capacity_) return sent::full;
    push(std::move(v));
    return sent::done;
  }

  // try_recv_locked() takes a value into out (true), or finds the channel closed and drained
  // (true, out empty), or finds nothing (false). A sender it took from is woken through
  // `woken`, after the lock.
  bool try_recv_locked(std::optional<T>& out, detail::wake_later& woken) noexcept {
    if (count_ != 0) {
      out.emplace(pop());
      // Room was made: the longest-waiting sender's value goes in behind the others.
      if (detail::wait_node* s = senders_.claim()) {
        push(std::move(*static_cast<detail::send_node<T>*>(s)->source));
        woken.add(s);
      }
      return true;
    }
    if (detail::wait_node* s = senders_.claim()) {  // unbuffered: straight from the sender
      out.emplace(std::move(*static_cast<detail::send_node<T>*>(s)->source));
      woken.add(s);
      return true;
    }
    if (closed_) {
      out.reset();
      return true;
    }
    return false;
  }

  void push(T&& v) noexcept {
    std::size_t at = head_ + count_;
    if (at >= capacity_) at -= capacity_;
    ::new (static_cast<void*>(buffer_ + at)) T(std::move(v));
    ++count_;
  }
  T pop() noexcept {
    T* p = std::launder(buffer_ + head_);
    T v(std::move(*p));
    p->~T();
    if (++head_ == capacity_) head_ = 0;
    --count_;
    return v;
  }

  T* buffer_;  // capacity_ slots, count_ of them in use from head_ (ring)
  std::size_t head_ = 0;
  std::size_t count_ = 0;
};

}  // namespace weft
