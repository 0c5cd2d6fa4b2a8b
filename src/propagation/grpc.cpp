// grpc.cpp: server calls as fibers, client calls that suspend only their fiber.
#include <weft/grpc.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include <weft/deadline.hpp>
#include <weft/this_fiber.hpp>

#include "sched/cancel_scope.hpp"
#include "sched/pool.hpp"
#include "sched/waiting.hpp"

namespace weft::grpc {
namespace {

using steady = std::chrono::steady_clock;
using sys_clock = std::chrono::system_clock;

// Deadlines cross between clocks here: gRPC's are system_clock, weft's steady_clock.
detail::ticks steady_ticks_of(sys_clock::time_point d) noexcept {
  const auto sys_now = sys_clock::now();
  if (d >= sys_clock::time_point::max() - std::chrono::hours(24 * 365)) return detail::never;
  const auto left = std::chrono::duration_cast<steady::duration>(d - sys_now);
  return (steady::now() + left).time_since_epoch().count();
}

sys_clock::time_point system_of(steady::time_point d) noexcept {
  const auto left = d - steady::now();
  return sys_clock::now() + std::chrono::duration_cast<sys_clock::duration>(left);
}

// fiber_reactor ends one server call. gRPC calls OnCancel() (any thread) when the client
// cancels or the deadline passes, and OnDone() last, once the call is over.
class fiber_reactor final : public ::grpc::ServerUnaryReactor {
 public:
  explicit fiber_reactor(detail::cancel_scope* scope) noexcept : scope_(scope) {}
  void OnCancel() override { detail::request_cancel(scope_); }
  void OnDone() override {
    detail::release(scope_);
    delete this;
  }

 private:
  detail::cancel_scope* scope_;  // retained until OnDone()
};

// status_message() is what() cut to max_status_message bytes: gRPC sends the message in a
// trailer, and one past the peer's metadata limit fails the call with RESOURCE_EXHAUSTED
// instead (and, measured, broke later calls on the same channel).
std::string status_message(std::string_view what) {
  if (what.size() <= max_status_message) return std::string(what);
  constexpr std::string_view cut_mark = "...";
  std::size_t keep = max_status_message - cut_mark.size();
  // Never half a UTF-8 sequence: back off to the start of the one that was cut.
  while (keep > 0 && (static_cast<unsigned char>(what[keep]) & 0xc0) == 0x80)
    --keep;
  std::string out(what.substr(0, keep));
  out += cut_mark;
  return out;
}

::grpc::Status status_of_current_exception() {
  try {
    throw;
  } catch (const error& e) {
    if (e.code() == errc::cancelled) {
      return {::grpc::StatusCode::CANCELLED, status_message(e.what())};
    }
    if (e.code() == errc::deadline_exceeded) {
      return {::grpc::StatusCode::DEADLINE_EXCEEDED, status_message(e.what())};
    }
    return {::grpc::StatusCode::UNKNOWN, status_message(e.what())};
  } catch (const std::exception& e) {
    return {::grpc::StatusCode::UNKNOWN, status_message(e.what())};
  } catch (...) {
    return {::grpc::StatusCode::UNKNOWN, "weft: the handler threw a non-standard exception"};
  }
}

// server_call is the job of one call's fiber.
struct server_call final : detail::job {
  server_call(std::function<::grpc::Status()> h, fiber_reactor* r)
      : handler(std::move(h)), reactor(r) {}
  void run(detail::pool&) noexcept override {
    ::grpc::Status status;
    try {
      status = handler();
    } catch (...) {
      status = status_of_current_exception();
    }
    // The call may be over (and the reactor gone) as soon as Finish() returns.
    std::exchange(reactor, nullptr)->Finish(status);
  }
  void discard_call() noexcept override {
    try {
      handler = nullptr;
    } catch (...) {
      detail::report_unhandled_here(std::current_exception());
    }
  }
  void complete(detail::pool&) noexcept override { delete this; }
  void fail(detail::pool&, std::exception_ptr) noexcept override {
    std::exchange(reactor, nullptr)
        ->Finish({::grpc::StatusCode::RESOURCE_EXHAUSTED, "weft: no fiber for the call"});
    delete this;
  }
  std::function<::grpc::Status()> handler;
  fiber_reactor* reactor;
};

// call_state is shared by a client call's caller and its completion, on the heap: either
// may be the last to use it (a caller that gave up, a completion that comes late).
struct call_state {
  detail::spinlock lock;
  detail::waiter* waiters = nullptr;
  bool done = false;
  bool abandoned = false;  // every copy of the completion was destroyed uncalled
  ::grpc::Status status;

  // finish() records how the call ended -- the first time only -- and wakes the caller.
  void finish(::grpc::Status* s) noexcept {
    std::lock_guard<detail::spinlock> g(lock);
    if (done) return;
    if (s != nullptr) {
      status = std::move(*s);
    } else {
      abandoned = true;
    }
    done = true;
    detail::wake_all(waiters);
  }
  bool finished() const noexcept { return done; }
};

// completion is the `done` handed to start(). Its copies share one owner, which finishes the
// call as abandoned when the last copy goes uncalled (as Asio's adaptor reports
// operation_aborted): a caller never waits for a completion that no longer exists.
class completion {
 public:
  explicit completion(std::shared_ptr<call_state> state)
      : owner_(std::make_shared<owner>(std::move(state))) {}
  void operator()(::grpc::Status s) const { owner_->state->finish(&s); }

 private:
  struct owner {
    explicit owner(std::shared_ptr<call_state> s) noexcept : state(std::move(s)) {}
    owner(const owner&) = delete;
    owner& operator=(const owner&) = delete;
    ~owner() { state->finish(nullptr); }
    std::shared_ptr<call_state> state;
  };
  std::shared_ptr<owner> owner_;
};

// wait_for() waits until the call finished; cancellable, it throws as block() does.
void wait_for(call_state& state, bool cancellable) {
  static const detail::wait_label label{"gRPC call", nullptr, nullptr};
  const detail::wait_mark mark(label);
  detail::block(
      state.lock, state.waiters, [&state] { return state.finished(); }, nullptr, cancellable);
}

// let_go() is what call() does before it leaves early (the caller cancelled or out of time,
// or start() threw): cancel the call, and if gRPC holds one on ctx -- which refers to ctx,
// the request and the reply, objects of the caller's -- wait until gRPC lets it go, which
// gRPC promises to do once it is cancelled. A completion no gRPC call holds (start() never
// issued one) touches only the shared state: it is not waited for.
void let_go(::grpc::ClientContext& ctx, call_state& state) {
  ctx.TryCancel();
  if (ctx.c_call() != nullptr) wait_for(state, false);
}

::grpc::Status result_of(call_state& state) {
  std::lock_guard<detail::spinlock> g(state.lock);
  if (state.abandoned) {
    return {::grpc::StatusCode::CANCELLED,
            "weft: grpc::call: the call's completion was destroyed without being called"};
  }
  return std::move(state.status);
}

}  // namespace

::grpc::ServerUnaryReactor* serve(executor& ex, const propagator& p,
                                  ::grpc::CallbackServerContext* ctx,
                                  std::function<::grpc::Status()> handler) {
  detail::cancel_scope* scope = detail::make_scope(nullptr, steady_ticks_of(ctx->deadline()));
  auto* reactor = new fiber_reactor(scope);
  try {
    const auto& metadata = ctx->client_metadata();
    context incoming = p.extract([&metadata](std::string_view key) -> std::optional<std::string> {
      // A key sent several times is one list, in the order it came (HTTP's rule): repeated
      // baggage or tracestate entries each carry members.
      const auto [first, last] = metadata.equal_range(::grpc::string_ref(key.data(), key.size()));
      if (first == last) return std::nullopt;
      std::string joined;
      for (auto it = first; it != last; ++it) {
        if (it != first) joined += ',';
        joined.append(it->second.data(), it->second.size());
      }
      return joined;
    });
    auto* job = new server_call(std::move(handler), reactor);
    // Submitted from inside the extracted context: the fiber starts with a snapshot of it.
    incoming.run([&] { detail::pool_of(ex)->submit(job, scope); });
  } catch (const error& e) {
    if (e.code() == errc::executor_closed) {
      reactor->Finish({::grpc::StatusCode::UNAVAILABLE, status_message(e.what())});
    } else {
      reactor->Finish({::grpc::StatusCode::INTERNAL, status_message(e.what())});
    }
  } catch (const std::exception& e) {
    reactor->Finish({::grpc::StatusCode::RESOURCE_EXHAUSTED, status_message(e.what())});
  }
  return reactor;
}

::grpc::Status call(const propagator& p, ::grpc::ClientContext& ctx,
                    const std::function<void(std::function<void(::grpc::Status)>)>& start) {
  p.inject([&ctx](std::string_view key, std::string_view value) {
    ctx.AddMetadata(std::string(key), std::string(value));
  });
  if (const auto limit = this_fiber::deadline()) {
    const sys_clock::time_point d = system_of(*limit);
    if (d < ctx.deadline()) ctx.set_deadline(d);
  }
  this_fiber::throw_if_cancelled();    // no call at all once cancelled or out of time
  const detail::io_wait_mark waiting;  // executor_stats::io_waiting
  const auto state = std::make_shared<call_state>();
  try {
    start(completion(state));
  } catch (...) {
    let_go(ctx, *state);
    throw;
  }
  try {
    wait_for(*state, true);
  } catch (const error&) {
    let_go(ctx, *state);
    throw;
  }
  return result_of(*state);
}

}  // namespace weft::grpc
