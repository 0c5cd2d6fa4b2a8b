// weft/asio.hpp: Boost.Asio operations that suspend only the calling fiber.
//
//   std::size_t n = socket.async_read_some(buffer, weft::use_fiber);  // a plain call
//
// Any Asio asynchronous operation (sockets, acceptors, timers, resolvers, composed operations
// such as async_read, Beast) takes weft::use_fiber as its completion token: on a pool fiber
// the call suspends the fiber -- its worker runs other fibers -- until the operation
// completes, then returns the operation's value or throws boost::system::system_error; with
// boost::asio::redirect_error(weft::use_fiber, ec) the error goes to ec instead. On a plain
// thread the call blocks. The fiber's context is intact afterwards, on whatever worker it
// resumes. A pending operation is a cancellation point: when the fiber's group is cancelled
// or its deadline passes, the operation is cancelled through Asio's per-operation
// cancellation (the request runs on the operation's executor -- for an initiation without
// one, on io_context(ex) of the calling fiber's executor), and the call throws
// weft::error(cancelled or deadline_exceeded) once the operation has finished (the I/O object
// stays usable). The deadline always wins on time: an operation that cannot be cancelled (no
// cancellation handler in its slot: Asio 1.81's resolver, a user's initiation that ignores
// the slot), or whose io_context is stopped or not run (the request does not run within
// 50 ms), is abandoned -- the call throws at once and the operation completes later into
// weft's own state. Memory such an operation writes into (its buffers) must outlive it, as
// with any Asio operation. An exception that escapes from the operation while weft runs it
// (a completion condition that throws) is rethrown in the caller.
//
// io_context(ex) is run by ex's workers for ex's whole life: io_context(ex).stop() makes them
// restart it (pending operations go on); to end operations, cancel them or close their I/O
// objects. Handlers posted to it run on a worker outside any fiber: they must not block, and
// an exception that escapes from one goes to on_unhandled_exception.
//
// Opt-in: weft.hpp does not include this header. Boost.Asio is header-only.
#pragma once

#include <atomic>
#include <exception>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/system_executor.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include <weft/detail/spinlock.hpp>
#include <weft/executor.hpp>

namespace weft {

// use_fiber_t is the type of the completion token use_fiber.
struct use_fiber_t {
  constexpr use_fiber_t() noexcept = default;
};
inline constexpr use_fiber_t use_fiber{};

// io_context() is the io_context for the I/O objects of ex's fibers. It lives as long as ex
// and weft runs it (on an I/O thread of ex, started on first use); destroy the I/O objects
// made on it before ex. use_fiber works as well with any io_context that someone runs.
boost::asio::io_context& io_context(executor& ex);

namespace detail {

struct waiter;

// io_wait is a pending operation as both sides see it: the waiting caller, the completion
// handler and a cancellation request each hold a reference, and the last one frees it. It is
// on the heap, not on the caller's stack, so that a caller whose deadline passed can leave
// while an operation that cannot be cancelled is still running (wait_io): the late
// completion then touches only this.
struct io_wait {
  explicit io_wait(boost::asio::any_io_executor ex) : io_executor(std::move(ex)) {}
  io_wait(const io_wait&) = delete;
  io_wait& operator=(const io_wait&) = delete;

  // finish() is the operation's last touch: ran = the handler was called (else it was
  // destroyed uncalled: its io_context went, or an exception escaped from the operation --
  // then `failure` is that exception, when weft could catch it).
  void finish(bool ran, std::exception_ptr failure = nullptr) noexcept;
  void retain() noexcept { refs.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  std::atomic<unsigned> refs{1};
  spinlock lock;  // guards what follows
  waiter* waiters = nullptr;
  bool done = false;
  bool abandoned = false;
  bool cancel_pending = false;  // a cancellation request is on its way to the operation
  bool uncancellable = false;   // the request found no cancellation handler to call
  std::exception_ptr failure;   // what escaped from the operation (a completion condition)
  boost::asio::cancellation_signal signal;
  boost::asio::any_io_executor io_executor;  // where the cancellation request must run

 protected:
  virtual ~io_wait() = default;
};

// wait_io() waits until the operation finished. If the caller is cancelled (or out of time)
// first, it asks the operation to cancel and throws weft::error once the operation is over
// -- or at once when it cannot be cancelled or its io_context is stopped (it is abandoned:
// it completes later, into w alone; see weft/asio.hpp's notes). An operation abandoned by its
// io_context throws system_error(operation_aborted); one that threw, its exception.
void wait_io(io_wait& w);

// handler_dropped() is a fiber_handler destroyed uncalled: finish(false), or -- during the
// unwinding of an exception that weft's reactor will catch -- finish with that exception.
void handler_dropped(io_wait* w) noexcept;

// cancel_executor() is where to send the cancellation request of an operation whose
// initiation has no executor: the calling fiber's executor's io_context if it has one (the
// operation most likely runs there), else Asio's system executor.
boost::asio::any_io_executor cancel_executor();

// io_state keeps what the operation completes with.
template <class... Args>
struct io_state final : io_wait {
  using io_wait::io_wait;
  std::optional<std::tuple<std::decay_t<Args>...>> values;
};

// fiber_handler is the completion handler use_fiber makes: it stores the results and wakes
// the caller. Move-only; a handler destroyed without being called says so.
template <class... Args>
class fiber_handler {
 public:
  explicit fiber_handler(io_state<Args...>* s) noexcept : state_(s) { s->retain(); }
  fiber_handler(fiber_handler&& o) noexcept : state_(std::exchange(o.state_, nullptr)) {}
  fiber_handler& operator=(fiber_handler&&) = delete;
  ~fiber_handler() {
    if (state_ != nullptr) handler_dropped(state_);
  }

  using cancellation_slot_type = boost::asio::cancellation_slot;
  cancellation_slot_type get_cancellation_slot() const noexcept {
    return state_ != nullptr ? state_->signal.slot() : cancellation_slot_type();
  }

  template <class... B>
  void operator()(B&&... args) {
    io_state<Args...>* s = std::exchange(state_, nullptr);
    try {
      s->values.emplace(std::forward<B>(args)...);
    } catch (...) {
      s->finish(false, std::current_exception());  // the caller gets the exception
      s->release();
      return;
    }
    s->finish(true);
    s->release();
  }

 private:
  io_state<Args...>* state_;
};

// io_result<T...>::type is what a call returns for the values T...: nothing, one value, or
// a tuple.
template <class... T>
struct io_result {
  using type = std::conditional_t<
      sizeof...(T) == 0, void,
      std::conditional_t<sizeof...(T) == 1, std::tuple_element_t<0, std::tuple<T..., void>>,
                         std::tuple<T...>>>;
};

// signature_parts splits a completion signature's arguments: a leading error_code is thrown
// (or redirected), a leading exception_ptr rethrown; the rest is the result.
template <class... Args>
struct signature_parts {
  static constexpr bool has_error = false;
  static constexpr bool has_exception = false;
  using result = io_result<std::decay_t<Args>...>;
  static constexpr std::size_t skip = 0;
};
template <class First, class... Rest>
struct signature_parts<First, Rest...> {
  static constexpr bool has_error = std::is_same_v<std::decay_t<First>, boost::system::error_code>;
  static constexpr bool has_exception = std::is_same_v<std::decay_t<First>, std::exception_ptr>;
  static constexpr std::size_t skip = (has_error || has_exception) ? 1 : 0;
  using result = std::conditional_t<skip == 1, io_result<std::decay_t<Rest>...>,
                                    io_result<std::decay_t<First>, std::decay_t<Rest>...>>;
};

// run_io() starts the operation with a fiber_handler, waits, and produces its result.
template <class... Args, class Initiation, class... InitArgs>
typename signature_parts<Args...>::result::type run_io(boost::system::error_code* redirect,
                                                       Initiation&& init, InitArgs&&... args) {
  using parts = signature_parts<Args...>;
  // The cancellation request runs where the operation runs: the initiation's executor, or --
  // an initiation without one (a user's async_initiate) -- the io_context weft runs.
  using associated =
      boost::asio::associated_executor_t<std::decay_t<Initiation>, boost::asio::system_executor>;
  boost::asio::any_io_executor where =
      std::is_same_v<associated, boost::asio::system_executor>
          ? cancel_executor()
          : boost::asio::any_io_executor(
                boost::asio::get_associated_executor(init, boost::asio::system_executor()));
  struct owner {
    io_state<Args...>* s;
    ~owner() { s->release(); }
  } state{new io_state<Args...>(std::move(where))};
  std::forward<Initiation>(init)(fiber_handler<Args...>(state.s), std::forward<InitArgs>(args)...);
  wait_io(*state.s);
  auto& values = *state.s->values;
  if constexpr (parts::has_error) {
    const boost::system::error_code& ec = std::get<0>(values);
    if (redirect != nullptr) {
      *redirect = ec;
    } else if (ec) {
      throw boost::system::system_error(ec);
    }
  } else if constexpr (parts::has_exception) {
    if (std::get<0>(values)) std::rethrow_exception(std::get<0>(values));
  }
  constexpr std::size_t n = sizeof...(Args) - parts::skip;
  return [&]<std::size_t... I>(std::index_sequence<I...>)->typename parts::result::type {
    if constexpr (n == 0) {
      return;
    } else if constexpr (n == 1) {
      return std::move(std::get<parts::skip>(values));
    } else {
      return typename parts::result::type(std::move(std::get<parts::skip + I>(values))...);
    }
  }
  (std::make_index_sequence<n>());
}

}  // namespace detail
}  // namespace weft

namespace boost::asio {

template <class R, class... Args>
class async_result<weft::use_fiber_t, R(Args...)> {
 public:
  using return_type = typename weft::detail::signature_parts<Args...>::result::type;

  template <class Initiation, class... InitArgs>
  static return_type initiate(Initiation&& init, weft::use_fiber_t, InitArgs&&... args) {
    return weft::detail::run_io<Args...>(nullptr, std::forward<Initiation>(init),
                                         std::forward<InitArgs>(args)...);
  }
};

// redirect_error(use_fiber, ec): the same, with the error stored in ec instead of thrown.
template <class R, class... Args>
class async_result<redirect_error_t<weft::use_fiber_t>, R(Args...)> {
 public:
  using return_type = typename weft::detail::signature_parts<Args...>::result::type;

  template <class Initiation, class RawToken, class... InitArgs>
  static return_type initiate(Initiation&& init, RawToken&& token, InitArgs&&... args) {
    return weft::detail::run_io<Args...>(&token.ec_, std::forward<Initiation>(init),
                                         std::forward<InitArgs>(args)...);
  }
};

}  // namespace boost::asio
