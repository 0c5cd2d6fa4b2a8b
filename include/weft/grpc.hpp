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
// DEADLINE_EXCEEDED, anything else -> UNKNOWN with what(). An executor that is shut down
// answers UNAVAILABLE. `ex` and `p` must outlive the server; handler must not touch the
// request or reply after returning.
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
// fibers); a plain thread blocks. If the caller is cancelled or runs out of time while the
// call is pending, the call is cancelled (ClientContext::TryCancel), call() waits for gRPC
// to let it go and throws weft::error(cancelled / deadline_exceeded). Otherwise it returns
// the call's status as gRPC gives it (DEADLINE_EXCEEDED included).
::grpc::Status call(const propagator& p, ::grpc::ClientContext& ctx,
                    const std::function<void(std::function<void(::grpc::Status)>)>& start);

}  // namespace weft::grpc
