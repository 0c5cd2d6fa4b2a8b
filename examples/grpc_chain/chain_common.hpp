// chain_common.hpp: what the three programs of the grpc_chain example share -- which
// context travels between them, how they log, and how a service reports what it saw.
#pragma once

#include <csignal>
#include <cstdio>
#include <string>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <weft/grpc.hpp>
#include <weft/weft.hpp>

#include "../request_log.hpp"
#include "chain.grpc.pb.h"

namespace chain_example {

// The request id under x-request-id; the trace and baggage under their W3C names.
inline const weft::propagator& propagator() {
  static const weft::propagator p = [] {
    weft::propagator q = weft::propagator::standard();
    q.add(example::request_id, "x-request-id");
    return q;
  }();
  return p;
}

// start_logging() logs to stderr, every line with the program, the request id and the trace.
inline void start_logging(const char* program) {
  spdlog::set_default_logger(spdlog::stderr_logger_mt(program));
  example::log_with_request_id((std::string("%H:%M:%S.%e ") + program + " [%*] [%&] %v").c_str());
}

inline std::string trace_id() {
  const weft::w3c::trace_context* t = weft::w3c::trace.try_get();
  return t ? t->parent.to_string().substr(3, 32) : "";
}

inline long long deadline_left_ms() {
  const auto d = weft::this_fiber::deadline();
  if (!d) return -1;
  return std::chrono::duration_cast<std::chrono::milliseconds>(*d -
                                                               std::chrono::steady_clock::now())
      .count();
}

// describe() fills in what this service sees of the request.
inline void describe(chain::Reply* reply) {
  reply->set_request_id(example::request_id.get());
  reply->set_trace_id(trace_id());
  if (const weft::w3c::trace_context* t = weft::w3c::trace.try_get()) {
    reply->set_parent_span(t->parent.to_string().substr(36, 16));
  }
  if (const weft::w3c::baggage_list* b = weft::w3c::baggage.try_get()) {
    reply->set_baggage(weft::w3c::format_baggage(b->entries));
  }
  reply->set_deadline_ms(deadline_left_ms());
}

// serve_until_signalled() runs a gRPC server for `service` on `port` (0: any), prints the
// port, and on SIGINT/SIGTERM shuts it down -- in-flight calls finish -- and returns.
inline int serve_until_signalled(const char* program, ::grpc::Service* service, int port,
                                 weft::executor& ex) {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);  // before gRPC starts its threads
  ::grpc::ServerBuilder builder;
  int chosen = 0;
  builder.AddListeningPort("127.0.0.1:" + std::to_string(port), ::grpc::InsecureServerCredentials(),
                           &chosen);
  builder.RegisterService(service);
  std::unique_ptr<::grpc::Server> server = builder.BuildAndStart();
  if (!server || chosen == 0) {
    std::fprintf(stderr, "%s: cannot listen on port %d\n", program, port);
    return 1;
  }
  std::printf("%s: listening on port %d\n", program, chosen);
  std::fflush(stdout);
  int sig = 0;
  sigwait(&stop, &sig);
  spdlog::info("signal {}: shutting down", sig);
  // Calls in flight get 10 s to finish; then they are cancelled (their fibers see it).
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(10));
  ex.join();
  spdlog::info("stopped");
  return 0;
}

}  // namespace chain_example
