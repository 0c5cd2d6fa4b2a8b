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
// one, on io_context(ex) of the calling fiber's executor -- and never while a handler of the
// operation runs: see op_executor), and the call throws
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
#include <cstdint>
#include <exception>
#include <memory>
#include <new>
#include <optional>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/execution/allocator.hpp>
#include <boost/asio/execution/blocking.hpp>
#include <boost/asio/execution/executor.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/execution/relationship.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/require.hpp>
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

// caller_pool_io() is the io_context weft runs for the calling fiber's executor (io_context(ex))
// once it is made; nullptr before, and on a plain thread.
const boost::asio::io_context* caller_pool_io() noexcept;

// op_memory_allocate() and op_memory_deallocate() are the memory of use_fiber operations,
// recycled per thread (src/io/op_memory.cpp): a block freed goes to the freeing thread's cache,
// for that thread's next operations. deallocate takes the size and alignment allocate got.
void* op_memory_allocate(std::size_t bytes, std::size_t align);
void op_memory_deallocate(void* p, std::size_t bytes, std::size_t align) noexcept;

// op_allocator is the allocator associated with use_fiber's handler: what Asio allocates
// through it -- the operation, a composed operation's stable state -- comes from
// op_memory_allocate(), not from the two blocks Asio keeps in the thread_info of the poll that
// runs the completion, which io_context::poll_one() frees when it returns.
template <class T>
struct op_allocator {
  using value_type = T;
  op_allocator() noexcept = default;
  template <class U>
  op_allocator(const op_allocator<U>&) noexcept {}
  T* allocate(std::size_t n) {
    if (n > std::size_t(-1) / sizeof(T)) throw std::bad_array_new_length();
    return static_cast<T*>(op_memory_allocate(sizeof(T) * n, alignof(T)));
  }
  void deallocate(T* p, std::size_t n) noexcept {
    op_memory_deallocate(p, sizeof(T) * n, alignof(T));
  }
};
template <class T, class U>
bool operator==(const op_allocator<T>&, const op_allocator<U>&) noexcept {
  return true;  // stateless: any one frees what another allocated
}

// io_wait is a pending operation as both sides see it: the waiting caller, the completion
// handler and a cancellation request each hold a reference, and the last one frees it. It is
// on the heap, not on the caller's stack, so that a caller whose deadline passed can leave
// while an operation that cannot be cancelled is still running (wait_io): the late
// completion then touches only this.
struct io_wait {
  explicit io_wait(boost::asio::any_io_executor ex)
      : io_executor(std::move(ex)), pool_io(caller_pool_io()) {}
  io_wait(const io_wait&) = delete;
  io_wait& operator=(const io_wait&) = delete;

  // finish() is the operation's last touch: ran = the handler was called (else it was
  // destroyed uncalled: its io_context went, or an exception escaped from the operation --
  // then `failure` is that exception, when weft could catch it).
  void finish(bool ran, std::exception_ptr failure = nullptr) noexcept;
  // Allocated from op_memory_allocate(): one operation after another on a worker reuses the
  // same few blocks instead of a malloc and a free each.
  static void* operator new(std::size_t bytes);
  static void operator delete(void* p, std::size_t bytes) noexcept;
  static void* operator new(std::size_t bytes, std::align_val_t a) {
    return op_memory_allocate(bytes, static_cast<std::size_t>(a));
  }
  static void operator delete(void* p, std::size_t bytes, std::align_val_t a) noexcept {
    op_memory_deallocate(p, bytes, static_cast<std::size_t>(a));
  }
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
  // The io_context weft runs for the caller's executor, if any: it never runs out of work
  // (weft holds a work guard on it), so tracking work on it changes nothing (op_executor).
  const boost::asio::io_context* pool_io;

  // Every handler of the operation -- each step of a composed one, the completion -- runs
  // holding step_lock (op_executor), and so does the cancellation request's emit: Asio's
  // cancellation signals, slots and states are not thread-safe, and weft's io_context runs
  // the handlers on any worker. step_owner is the thread holding it, so that a handler the
  // operation dispatches from inside another of its handlers runs there and then instead of
  // waiting for itself (as a strand does).
  spinlock step_lock;
  std::atomic<std::thread::id> step_owner{};

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

// step_guard holds w's step lock for one handler of its operation (or the cancellation
// request), unless this thread holds it already: then the handler is nested in another one.
// A handler never suspends a fiber, so a thread is a sound owner.
class step_guard {
 public:
  explicit step_guard(io_wait* w) noexcept : w_(w) {
    if (w == nullptr) return;
    const std::thread::id self = std::this_thread::get_id();
    if (!w->step_lock.try_lock()) {
      // Only this thread stores its own id, and clears it before it unlocks: relaxed is enough.
      if (w->step_owner.load(std::memory_order_relaxed) == self) {
        w_ = nullptr;
        return;
      }
      w->step_lock.lock();
    }
    w->step_owner.store(self, std::memory_order_relaxed);
  }
  step_guard(const step_guard&) = delete;
  step_guard& operator=(const step_guard&) = delete;
  ~step_guard() {
    if (w_ != nullptr) {
      w_->step_owner.store(std::thread::id(), std::memory_order_relaxed);
      w_->step_lock.unlock();
    }
  }

 private:
  io_wait* w_;
};

// wait_ref is one reference to an io_wait.
class wait_ref {
 public:
  explicit wait_ref(io_wait* w) noexcept : w_(w) {
    if (w != nullptr) w->retain();
  }
  wait_ref(wait_ref&& o) noexcept : w_(std::exchange(o.w_, nullptr)) {}
  wait_ref& operator=(wait_ref&&) = delete;
  ~wait_ref() {
    if (w_ != nullptr) w_->release();
  }
  io_wait* get() const noexcept { return w_; }

 private:
  io_wait* w_;
};

// run_step() runs f, a handler of w's operation, at once under w's step lock. The lock
// outlives f, which may be the completion, after which the caller may free w: hence the
// reference.
template <class F>
void run_step(io_wait* w, F&& f) {
  const wait_ref keep(w);
  const step_guard step(w);
  if constexpr (std::is_rvalue_reference_v<F&&> && !std::is_const_v<std::remove_reference_t<F>>) {
    f();  // handed over: run where it is, as Asio runs a completion
  } else {
    std::decay_t<F> run(f);  // an executor owns what it runs
    run();
  }
}

// serialized_step is a handler of w's operation handed to the underlying executor, to run
// later or elsewhere: under w's step lock, with a reference for the same reason.
template <class F>
class serialized_step {
 public:
  template <class G>
  serialized_step(io_wait* w, G&& f) : keep_(w), f_(std::forward<G>(f)) {}
  void operator()() {
    const step_guard step(keep_.get());
    f_();
  }

 private:
  wait_ref keep_;  // declared first: released after f_ is destroyed
  F f_;
};

// property_kind<P>: what requiring or preferring P leaves of op_executor's two shortcuts below.
template <class P>
struct property_kind {
  static constexpr bool keeps_inline = false;   // an io_context executor still runs at once
  static constexpr bool no_op_on_pool = false;  // preferring it changes nothing on weft's
};
template <class P>
requires std::is_same_v<P, boost::asio::execution::outstanding_work_t::tracked_t> ||
    std::is_same_v<P, boost::asio::execution::outstanding_work_t::untracked_t> ||
    std::is_same_v<P, boost::asio::execution::relationship_t::fork_t> ||
    std::is_same_v<P, boost::asio::execution::relationship_t::continuation_t> ||
    std::is_same_v<P, boost::asio::execution::blocking_t::possibly_t>
struct property_kind<P> {
  static constexpr bool keeps_inline = true;
  static constexpr bool no_op_on_pool = true;
};
template <class A>
struct property_kind<boost::asio::execution::allocator_t<A>> {
  static constexpr bool keeps_inline = true;
  static constexpr bool no_op_on_pool = std::is_same_v<A, void> ||
                                        std::is_same_v<A, std::allocator<void>> ||
                                        std::is_same_v<A, op_allocator<void>>;
};

// op_executor is the executor associated with use_fiber's completion handler: the executor the
// operation would have used (the I/O object's), whose every function -- Asio runs each step of
// a composed operation and the completion through the handler's associated executor -- holds
// the operation's step lock, so that the cancellation request (src/io/asio.cpp), holding it
// too, never emits while one of them re-arms or clears the cancellation slot. Properties and
// queries go to the underlying executor. It lives as long as the operation: nothing but the
// operation's own handlers runs through it.
//
// A strand would serialize them too, at the price of an allocation per operation and a trip
// through its queue per handler; this lock is in state weft allocates anyway, and an operation
// that is not cancelled finds it free. What else it costs is kept small: a handler Asio would
// run at once (an io_context's executor, possibly blocking, on one of that io_context's threads)
// runs at once, without going through any_io_executor's type erasure (an allocation); and on
// weft's own io_context the properties Asio prefers for every handler -- work tracking, the
// default allocator -- are skipped instead of making new type-erased executors. Counted with
// callgrind: ~290 instructions per operation more than before on weft's io_context, ~400 on
// another (docs/io.md).
template <class Executor>
class op_executor {
 public:
  // native: ex's io_context when ex runs a function at once on that io_context's threads;
  // pool: native is weft's own.
  op_executor(Executor ex, io_wait* w, boost::asio::io_context* native, bool pool) noexcept
      : ex_(std::move(ex)), w_(w), native_(native), pool_(pool) {}

  template <class F>
  void execute(F&& f) const {
    if (native_ != nullptr && native_->get_executor().running_in_this_thread()) {
      // What the io_context's executor does itself, but for catching an exception to rethrow
      // it from run(): it leaves the handler as it did before use_fiber had an executor.
      run_step(w_, std::forward<F>(f));
      return;
    }
    ex_.execute(serialized_step<std::decay_t<F>>(w_, std::forward<F>(f)));
  }

  template <class Property>
  requires boost::asio::can_query<const Executor&, Property>::value decltype(auto) query(
      const Property& p) const
      noexcept(boost::asio::is_nothrow_query<const Executor&, Property>::value) {
    return boost::asio::query(ex_, p);
  }

  template <class Property>
  requires boost::asio::can_require<const Executor&, Property>::value auto require(
      const Property& p) const
      -> op_executor<
          std::decay_t<typename boost::asio::require_result<const Executor&, Property>::type>> {
    constexpr bool keep = property_kind<std::decay_t<Property>>::keeps_inline;
    return {boost::asio::require(ex_, p), w_, keep ? native_ : nullptr, keep && pool_};
  }

  template <class Property>
  requires boost::asio::can_prefer<const Executor&, Property>::value auto prefer(const Property& p)
      const -> op_executor<
          std::decay_t<typename boost::asio::prefer_result<const Executor&, Property>::type>> {
    using kind = property_kind<std::decay_t<Property>>;
    if constexpr (kind::no_op_on_pool &&
                  std::is_same_v<std::decay_t<typename boost::asio::prefer_result<const Executor&,
                                                                                  Property>::type>,
                                 Executor>) {
      if (pool_) return *this;  // (a preference may be ignored)
    }
    return {boost::asio::prefer(ex_, p), w_, kind::keeps_inline ? native_ : nullptr,
            kind::keeps_inline && pool_};
  }

  friend bool operator==(const op_executor& a, const op_executor& b) noexcept {
    return a.w_ == b.w_ && a.ex_ == b.ex_;
  }

 private:
  Executor ex_;
  io_wait* w_;
  boost::asio::io_context* native_;
  bool pool_;
};

// handler_executor() is the associated executor of a use_fiber handler of w, for an operation
// whose default is ex; an executor of the older Networking TS model (no execute()) stays as
// it is.
template <class Executor>
using handler_executor_t = std::conditional_t<boost::asio::execution::is_executor<Executor>::value,
                                              op_executor<Executor>, Executor>;

// inline_io_executor<E>: E is an executor type of an io_context, which runs a function at once
// when called on one of the io_context's own threads. (Asio 1.81 keeps blocking.never in the
// executor's value, not in Bits: this test of Bits never sees it, and an I/O object whose
// executor requires blocking.never still has its handlers' steps run at once -- a known gap.)
template <class E>
struct inline_io_executor : std::false_type {};
template <std::uintptr_t Bits>
struct inline_io_executor<boost::asio::io_context::basic_executor_type<std::allocator<void>, Bits>>
    : std::bool_constant<(Bits & 1) == 0> {};

// native_context() is ex's io_context if ex holds such an executor. Asio's operations hold
// their I/O object's executor with work tracked (bit 4 of the type): looking for the plain type
// alone sent their handlers through any_io_executor's type erasure, an allocation each. Only
// the tracked bit makes a type of its own: relationship.continuation and blocking.never are
// bits of the executor's value, so those two types are all there is to look for.
template <std::uintptr_t... Bits>
boost::asio::io_context* native_context(const boost::asio::any_io_executor& ex) noexcept {
  boost::asio::io_context* found = nullptr;
  auto look = [&]<std::uintptr_t B>() {
    using type = boost::asio::io_context::basic_executor_type<std::allocator<void>, B>;
    static_assert(inline_io_executor<type>::value);
    if (found != nullptr) return;  // no more type comparisons once found
    if (const auto* io = ex.template target<type>()) found = &io->context();
  };
  (look.template operator()<Bits>(), ...);
  return found;
}

// untracked() is ex, an executor of weft's own io_context, without outstanding work: that
// io_context never runs out of work, and Beast asks for the associated executor with its
// work-tracking candidate several times per operation. Each copy of a tracked executor is an
// increment and a decrement of the io_context's work count, a line every worker writes: an
// HTTP request made 12 such copies with use_fiber against 6 on Asio's coroutines. (A candidate
// of io_context's own executor type keeps its tracking: Beast's streams and Asio's I/O objects
// made on io_context(ex) hold an any_io_executor, the case counted.)
inline boost::asio::any_io_executor untracked(const boost::asio::any_io_executor& ex) noexcept {
  using tracked = boost::asio::io_context::basic_executor_type<std::allocator<void>, 4>;
  if (const auto* t = ex.target<tracked>()) {
    return boost::asio::require(*t, boost::asio::execution::outstanding_work.untracked);
  }
  return ex;
}

template <class Executor>
handler_executor_t<Executor> handler_executor(const Executor& ex, io_wait* w) noexcept {
  if constexpr (boost::asio::execution::is_executor<Executor>::value) {
    boost::asio::io_context* native = nullptr;
    if constexpr (inline_io_executor<Executor>::value) {
      native = &ex.context();
    } else if constexpr (std::is_same_v<Executor, boost::asio::any_io_executor>) {
      native = native_context<0, 4>(ex);  // plain, tracked
    }
    const bool pool = native != nullptr && w != nullptr && native == w->pool_io;
    if constexpr (std::is_same_v<Executor, boost::asio::any_io_executor>) {
      if (pool) return op_executor<Executor>(untracked(ex), w, native, true);
    }
    return op_executor<Executor>(ex, w, native, pool);
  } else {
    return ex;
  }
}

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
  io_wait* wait_state() const noexcept { return state_; }  // for its associated executor

  using allocator_type = op_allocator<void>;
  allocator_type get_allocator() const noexcept { return {}; }

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

// use_fiber's handler runs where the operation would have run it, under the operation's step
// lock (weft::detail::op_executor).
template <class... Args, class Executor>
struct associated_executor<weft::detail::fiber_handler<Args...>, Executor> {
  using type = weft::detail::handler_executor_t<Executor>;
  static type get(const weft::detail::fiber_handler<Args...>& h,
                  const Executor& ex = Executor()) noexcept {
    return weft::detail::handler_executor(ex, h.wait_state());
  }
};

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
