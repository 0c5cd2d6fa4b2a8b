// weft/detail/job.hpp: one piece of work handed to an executor, and what its fiber inherits.
#pragma once

#include <cstddef>
#include <exception>
#include <functional>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>

#include <weft/detail/snapshot.hpp>

namespace weft::detail {

class pool;
struct cancel_scope;

// job is a callable waiting for (or running on) its fiber. The executor's templates make
// one per spawn/post; the pool owns it from submission until complete().
struct job {
  job* next = nullptr;            // link in the pool's queue of work submitted from outside
  node* context = nullptr;        // the snapshot the fiber starts with (owned reference)
  cancel_scope* scope = nullptr;  // the cancellation the fiber inherits (owned reference)

  job() = default;
  job(const job&) = delete;
  job& operator=(const job&) = delete;
  virtual ~job();  // drops the inherited context and scope

  // run() calls the user's function on the new fiber and records its outcome.
  virtual void run(pool& owner) noexcept = 0;
  // discard_call() destroys the callable and its arguments; the fiber does it when run()
  // returned. A destructor that throws is reported, not fatal.
  virtual void discard_call() noexcept = 0;
  // complete() publishes the outcome (wakes waiters) and drops the pool's reference. It runs
  // after the fiber's fiber_local values and context are gone.
  virtual void complete(pool& owner) noexcept = 0;
  // fail() ends a job whose fiber could not be made, as if the callable had thrown e.
  virtual void fail(pool& owner, std::exception_ptr e) noexcept = 0;
  // settle() is called by the job's fiber before run(), once the fiber took the context and
  // scope: a job nobody else points to may move itself into `room` (bytes at the top of the
  // fiber's own stack) and free its heap block, so that a parked fiber holds no heap memory.
  // Returns the job to use from then on.
  virtual job* settle(void* room, std::size_t bytes) noexcept {
    static_cast<void>(room);
    static_cast<void>(bytes);
    return this;
  }
};

// stored_call is a job's callable with its arguments, destroyed on demand.
template <class F, class... A>
class stored_call {
 public:
  template <class G, class... B>
  explicit stored_call(G&& g, B&&... b)
      : call_(std::in_place, std::forward<G>(g), std::forward<B>(b)...) {}
  stored_call(stored_call&&) = default;

  // relocatable: moving it cannot throw (settle() must not fail).
  static constexpr bool relocatable = std::is_nothrow_move_constructible_v<std::tuple<F, A...>>;

  // invoke() calls f(a...) once, handing it the stored copies as rvalues.
  decltype(auto) invoke() {
    return std::apply(
        [](auto&&... t) -> decltype(auto) { return std::invoke(std::forward<decltype(t)>(t)...); },
        std::move(*call_));
  }

  void discard() noexcept {
    try {
      call_.reset();
    } catch (...) {
      report_unhandled_here(std::current_exception());
    }
  }

 private:
  std::optional<std::tuple<F, A...>> call_;
};

}  // namespace weft::detail
