// consumer-grpc: a program built against weft-grpc from outside weft's tree (the CMake consumer
// of tests/consumer/run, when weft was built with gRPC).
#include <cstdio>

#include <weft/grpc.hpp>

int main() {
  const weft::propagator p = weft::propagator::standard();
  ::grpc::ClientContext ctx;
  const ::grpc::Status s = weft::grpc::call(p, ctx, [](auto done) {
    done(::grpc::Status(::grpc::StatusCode::UNAVAILABLE, "no server"));
  });
  std::printf("consumer-grpc: call returned '%s'\n", s.error_message().c_str());
  return s.error_code() == ::grpc::StatusCode::UNAVAILABLE ? 0 : 1;
}
