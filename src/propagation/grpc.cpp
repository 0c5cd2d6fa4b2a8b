// grpc.cpp: server calls as fibers, client calls that suspend only their fiber. Built on
// weft's public API only (src/README.md): a task group gives a call's fiber its deadline and
// its cancellation, a channel carries a client call's end to the waiting caller, and a
// shield lets a caller that gave up wait until gRPC no longer uses its objects.
#include <weft/grpc.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <weft/channel.hpp>
#include <weft/context.hpp>
#include <weft/deadline.hpp>
#include <weft/error.hpp>
#include <weft/shield.hpp>
#include <weft/sync.hpp>
#include <weft/task_group.hpp>
#include <weft/this_fiber.hpp>

namespace weft::grpc {
namespace {

using steady = std::chrono::steady_clock;
using sys_clock = std::chrono::system_clock;

// Deadlines cross between clocks here: gRPC's are system_clock, weft's steady_clock.
// nullopt: no deadline (gRPC's "infinite future" is time_point::max or close to it).
std::optional<steady::time_point> steady_of(sys_clock::time_point d) noexcept {
  const auto sys_now = sys_clock::now();
  if (d >= sys_clock::time_point::max() - std::chrono::hours(24 * 365)) return std::nullopt;
  return steady::now() + std::chrono::duration_cast<steady::duration>(d - sys_now);
}

sys_clock::time_point system_of(steady::time_point d) noexcept {
  const auto left = d - steady::now();
  return sys_clock::now() + std::chrono::duration_cast<sys_clock::duration>(left);
}

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

// fiber_reactor ends one server call. Its task group holds the call's one fiber and is the
// fiber's cancellation: gRPC calls OnCancel() (any thread, before the fiber started or after
// it ended too) when the client cancels or the deadline passes, and OnDone() last, once the
// call is over.
class fiber_reactor final : public ::grpc::ServerUnaryReactor {
 public:
  void OnCancel() override {
    if (group) group->cancel();
  }
  void OnDone() override {
    if (group) {
      // The call is over, so its fiber finished the call and is ending (it has cleanup
      // left, no waits); the group's destructor would wait for it too, but wait() first
      // takes what it would report: the bad_alloc of a fiber that could not be made, which
      // was answered already with RESOURCE_EXHAUSTED.
      try {
        group->wait();
      } catch (...) {
      }
    }
    delete this;
  }

  // Made on gRPC's thread by serve(), before gRPC knows the reactor; never changed after.
  std::optional<task_group> group;
};

// call_end finishes the call, once, when its last holder lets it go: the fiber after the
// handler returned, or -- the fiber's callable destroyed without having run -- serve() or
// whoever dropped it. So a call that no fiber runs still ends, with `status` saying why.
struct call_end {
  explicit call_end(fiber_reactor* r) noexcept : reactor(r) {}
  call_end(const call_end&) = delete;
  call_end& operator=(const call_end&) = delete;
  ~call_end() { reactor->Finish(status); }

  fiber_reactor* reactor;
  ::grpc::Status status{::grpc::StatusCode::RESOURCE_EXHAUSTED, "weft: no fiber for the call"};
};

// call_fiber is what the call's fiber runs: the handler, then the call's end. The handler
// (and what it captured) is gone before the call ends -- also when the callable is destroyed
// uncalled, members going in reverse order -- so nothing of it outlives the request and the
// reply, which gRPC may free as soon as the call ends.
struct call_fiber {
  std::shared_ptr<call_end> end;
  std::function<::grpc::Status()> handler;

  void operator()() {
    const std::shared_ptr<call_end> mine = std::move(end);
    auto h = std::move(handler);
    try {
      mine->status = h();
    } catch (...) {
      mine->status = status_of_current_exception();
    }
    h = nullptr;
  }
};

// call_state is shared by a client call's caller and its completion, on the heap: either
// may be the last to use it (a caller that gave up, a completion that comes late). The one
// value its channel ever carries is how the call ended; nullopt: every copy of the completion
// was destroyed uncalled. Named, a caller waiting on it shows in fibers()/dump() as
// "channel gRPC call: recv".
struct call_state {
  channel<std::optional<::grpc::Status>> ended{1, "gRPC call"};
  std::atomic<bool> finished{false};

  // finish() records how the call ended -- the first time only -- and wakes the caller.
  // try_send() never waits: any thread may finish a call, gRPC's or an Asio handler.
  void finish(std::optional<::grpc::Status> s) noexcept {
    if (finished.exchange(true, std::memory_order_acq_rel)) return;
    (void)ended.try_send(std::move(s));  // room for it: this is the only send
  }
};

// completion is the `done` handed to start(). Its copies share one owner, which finishes the
// call as abandoned when the last copy goes uncalled (as Asio's adaptor reports
// operation_aborted): a caller never waits for a completion that no longer exists.
class completion {
 public:
  explicit completion(std::shared_ptr<call_state> state)
      : owner_(std::make_shared<owner>(std::move(state))) {}
  void operator()(::grpc::Status s) const { owner_->state->finish(std::move(s)); }

 private:
  struct owner {
    explicit owner(std::shared_ptr<call_state> s) noexcept : state(std::move(s)) {}
    owner(const owner&) = delete;
    owner& operator=(const owner&) = delete;
    ~owner() { state->finish(std::nullopt); }
    std::shared_ptr<call_state> state;
  };
  std::shared_ptr<owner> owner_;
};

// refuse_where_waits_are_refused() throws weft::error(would_deadlock) on a worker thread
// outside a fiber (an Asio handler), where weft's waits refuse to hold the worker -- before
// the call is issued: once gRPC holds it, call() must wait for its end whatever happens.
// A zero-length wait on a semaphore nobody releases is how the public API asks (all of weft's
// waits refuse alike); elsewhere it times out at once, without throwing.
void refuse_where_waits_are_refused() {
  semaphore never(0);
  try {
    (void)never.try_acquire_for(steady::duration::zero());
  } catch (const error& e) {
    if (e.code() != errc::would_deadlock) throw;
    throw error(errc::would_deadlock,
                "weft: grpc::call() called from an Asio handler (or other code run outside a "
                "fiber) on a worker thread: waiting there would block the worker and the fibers "
                "queued on it; spawn a fiber (executor::spawn or post) and call from it");
  }
}

// let_go() is what call() does before it leaves early (the caller cancelled or out of time,
// or start() threw): cancel the call, and if gRPC holds one on ctx -- which refers to ctx,
// the request and the reply, objects of the caller's -- wait until gRPC lets it go, which
// gRPC promises to do once it is cancelled. That wait is shielded: the caller's cancellation
// or deadline, which brought it here, must not end it. A completion no gRPC call holds
// (start() never issued one) touches only the shared state: it is not waited for.
void let_go(::grpc::ClientContext& ctx, call_state& state) {
  ctx.TryCancel();
  if (ctx.c_call() == nullptr) return;
  // The value is still there for this recv: a recv that threw took nothing.
  shielded([&state] { (void)state.ended.recv(); });
}

::grpc::Status result_of(std::optional<::grpc::Status> ended) {
  if (!ended) {
    return {::grpc::StatusCode::CANCELLED,
            "weft: grpc::call: the call's completion was destroyed without being called"};
  }
  return std::move(*ended);
}

}  // namespace

::grpc::ServerUnaryReactor* serve(executor& ex, const propagator& p,
                                  ::grpc::CallbackServerContext* ctx,
                                  std::function<::grpc::Status()> handler) {
  auto* reactor = new fiber_reactor;
  auto end = std::make_shared<call_end>(reactor);
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
    call_fiber fiber{end, std::move(handler)};
    // The group is made under the call's deadline, so its fiber inherits it, and inside a
    // shield: whatever thread gRPC runs this on, the fiber is under the call's deadline and
    // cancellation only. Spawned from inside the extracted context, the fiber starts with a
    // snapshot of it.
    const std::optional<steady::time_point> deadline = steady_of(ctx->deadline());
    shielded([&] {
      auto start = [&] {
        reactor->group.emplace(ex);
        incoming.run([&] { reactor->group->spawn(std::move(fiber)); });
      };
      if (deadline) {
        with_deadline(*deadline, start);
      } else {
        start();
      }
    });
  } catch (const error& e) {
    end->status = {e.code() == errc::executor_closed ? ::grpc::StatusCode::UNAVAILABLE
                                                     : ::grpc::StatusCode::INTERNAL,
                   status_message(e.what())};
  } catch (const std::exception& e) {
    end->status = {::grpc::StatusCode::RESOURCE_EXHAUSTED, status_message(e.what())};
  }
  // If no fiber took the call, this was its last holder: the call ends here, with the status
  // set above (gRPC takes a Finish() made before the reactor is returned).
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
  this_fiber::throw_if_cancelled();  // no call at all once cancelled or out of time
  refuse_where_waits_are_refused();
  const auto state = std::make_shared<call_state>();
  try {
    start(completion(state));
  } catch (...) {
    let_go(ctx, *state);
    throw;
  }
  std::optional<std::optional<::grpc::Status>> ended;
  try {
    ended = state->ended.recv();  // a cancellation point; never closed, so never nullopt
  } catch (const error&) {
    let_go(ctx, *state);
    throw;
  }
  return result_of(std::move(*ended));
}

}  // namespace weft::grpc
