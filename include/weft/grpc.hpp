// weft/grpc.hpp: gRPC services and calls on weft fibers (library weft-grpc; built when gRPC
// is installed: meson option `grpc`).
//
// A server handler runs as a weft fiber whose context is extracted from the call's metadata
// (a propagator says which keys), whose deadline is the call's deadline, and which is
// cancelled when the client cancels. A call made from a fiber suspends only that fiber,
// carries the current context in its metadata and the fiber's remaining deadline as its own,
// and is cancelled when the fiber is. So a request id, a trace and a deadline set by a client
// are seen -- and the deadline shrinks -- in every service the request crosses.
#pragma once

#include <cstddef>
#include <functional>

#include <grpcpp/grpcpp.h>

#include <weft/executor.hpp>
#include <weft/propagation.hpp>

namespace weft::grpc {

// serve() runs handler() on a new fiber of ex and finishes the call with the Status it
// returns; it returns the reactor a callback service method must return:
//
//   ::grpc::ServerUnaryReactor* Work(::grpc::CallbackServerContext* ctx, const Req* req,
//                                    Reply* reply) override {
//     return weft::grpc::serve(ex_, prop_, ctx, [req, reply] {
//       reply->set_text(request_id.get() + ": " + req->text());   // plain blocking code
//       return ::grpc::Status::OK;
//     });
//   }
//
// The fiber starts in a copy of the context current where serve() is called (gRPC's thread:
// usually empty) with every variable `p` finds in the client's metadata bound, under the
// call's deadline (weft::this_fiber::deadline()). A client that cancels, or a deadline that
// passes, cancels the fiber: its waits throw weft::error(cancelled / deadline_exceeded).
// What handler throws becomes the status: weft's cancelled -> CANCELLED, deadline_exceeded ->
// DEADLINE_EXCEEDED, anything else -> UNKNOWN with what(). A what() longer than
// max_status_message (1 KiB) is cut to it, ending in "...": gRPC sends the message as
// metadata, and a long one would fail the call with RESOURCE_EXHAUSTED instead. An executor
// that is shut down answers UNAVAILABLE. A key that arrived in several metadata entries is
// given to the propagator once, its values joined with ',' in their order (so repeated
// `baggage` or `tracestate` entries all count). `ex` and `p` must outlive the server;
// handler must not touch the request or reply after returning.
// max_status_message is the most bytes of a what() that serve() puts in a status.
inline constexpr std::size_t max_status_message = 1024;

::grpc::ServerUnaryReactor* serve(executor& ex, const propagator& p,
                                  ::grpc::CallbackServerContext* ctx,
                                  std::function<::grpc::Status()> handler);

// call() makes a call with gRPC's callback API and waits for its status. `start` issues the
// call, handing gRPC the completion it is given:
//
//   ::grpc::ClientContext ctx;
//   chain::Reply reply;
//   ::grpc::Status s = weft::grpc::call(prop, ctx, [&](auto done) {
//     stub->async()->Work(&ctx, &request, &reply, std::move(done));
//   });
//
// Before the call, every variable `p` carries that is bound in the current context goes into
// ctx's metadata, and ctx's deadline becomes the earlier of its own and the caller's
// (weft::this_fiber::deadline()). A pool fiber waits suspended (its worker runs other
// fibers); a plain thread blocks. It returns the call's status as gRPC gives it
// (DEADLINE_EXCEEDED included), or CANCELLED ("... destroyed without being called") when
// every copy of the completion was destroyed uncalled.
//
// Leaving early: if the caller is cancelled or runs out of time while the call is pending,
// or if start throws, the call is cancelled (ClientContext::TryCancel) and call() throws
// weft::error(cancelled / deadline_exceeded), or what start threw. Before that it waits for
// gRPC to let the call go -- gRPC then still uses ctx, the request and the reply, which are
// the caller's, and it calls the completion promptly once cancelled -- but only when gRPC
// holds a call on ctx (start issued one). A completion that no gRPC call holds (start kept
// it, or handed it to code that never calls it) is not waited for: the deadline or the
// cancellation ends the wait on time, and a completion that runs later is harmless (call()
// and its completion share their state on the heap, nothing of call()'s frame). start must
// issue the call before it returns. In an Asio handler on a worker thread (where no wait may
// block the worker) call() throws errc::would_deadlock before start runs.
::grpc::Status call(const propagator& p, ::grpc::ClientContext& ctx,
                    const std::function<void(std::function<void(::grpc::Status)>)>& start);

}  // namespace weft::grpc
