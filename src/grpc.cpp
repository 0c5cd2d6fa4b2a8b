// grpc.cpp: server calls as fibers, client calls that suspend only their fiber.
#include <weft/grpc.hpp>

#include <chrono>
#include <string>

#include <weft/deadline.hpp>
#include <weft/this_fiber.hpp>

#include "cancel_scope.hpp"
#include "pool.hpp"
#include "waiting.hpp"

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

::grpc::Status status_of_current_exception() {
  try {
    throw;
  } catch (const error& e) {
    if (e.code() == errc::cancelled) return {::grpc::StatusCode::CANCELLED, e.what()};
    if (e.code() == errc::deadline_exceeded) {
      return {::grpc::StatusCode::DEADLINE_EXCEEDED, e.what()};
    }
    return {::grpc::StatusCode::UNKNOWN, e.what()};
  } catch (const std::exception& e) {
    return {::grpc::StatusCode::UNKNOWN, e.what()};
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

// call_wait is what a client call's caller waits on.
struct call_wait {
  detail::spinlock lock;
  detail::waiter* waiters = nullptr;
  bool done = false;
  ::grpc::Status status;
};

}  // namespace

::grpc::ServerUnaryReactor* serve(executor& ex, const propagator& p,
                                  ::grpc::CallbackServerContext* ctx,
                                  std::function<::grpc::Status()> handler) {
  detail::cancel_scope* scope = detail::make_scope(nullptr, steady_ticks_of(ctx->deadline()));
  auto* reactor = new fiber_reactor(scope);
  try {
    const auto& metadata = ctx->client_metadata();
    context incoming = p.extract([&metadata](std::string_view key) -> std::optional<std::string> {
      auto it = metadata.find(::grpc::string_ref(key.data(), key.size()));
      if (it == metadata.end()) return std::nullopt;
      return std::string(it->second.data(), it->second.size());
    });
    auto* job = new server_call(std::move(handler), reactor);
    // Submitted from inside the extracted context: the fiber starts with a snapshot of it.
    incoming.run([&] { detail::pool_of(ex)->submit(job, scope); });
  } catch (const error& e) {
    if (e.code() == errc::executor_closed) {
      reactor->Finish({::grpc::StatusCode::UNAVAILABLE, e.what()});
    } else {
      reactor->Finish({::grpc::StatusCode::INTERNAL, e.what()});
    }
  } catch (const std::exception& e) {
    reactor->Finish({::grpc::StatusCode::RESOURCE_EXHAUSTED, e.what()});
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
  call_wait w;
  start([&w](::grpc::Status s) {
    std::lock_guard<detail::spinlock> g(w.lock);
    w.status = std::move(s);
    w.done = true;
    detail::wake_all(w.waiters);
  });
  try {
    detail::block(
        w.lock, w.waiters, [&w] { return w.done; }, nullptr, true);
  } catch (const error&) {
    // The completion refers to w: wait for it before this frame goes.
    ctx.TryCancel();
    detail::block(
        w.lock, w.waiters, [&w] { return w.done; }, nullptr, false);
    throw;
  }
  return std::move(w.status);
}

}  // namespace weft::grpc
