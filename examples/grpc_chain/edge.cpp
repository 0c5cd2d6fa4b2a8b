// grpc_chain edge: the service a client calls. Its handler, on a weft fiber, logs, starts a
// span of its own and calls the backend with weft::grpc::call -- which suspends only this
// fiber, and passes on the request id, the trace (with the edge's span as the parent), the
// baggage and what is left of the deadline.
//
//   ./build/examples/grpc_chain_edge --backend PORT [--port N] [--threads N]
#include <string>

#include "../cli.hpp"
#include "chain_common.hpp"

namespace {

class edge final : public chain::Edge::CallbackService {
 public:
  edge(weft::executor& ex, int backend_port)
      : ex_(ex),
        backend_(chain::Backend::NewStub(::grpc::CreateChannel(
            "127.0.0.1:" + std::to_string(backend_port), ::grpc::InsecureChannelCredentials()))) {}

  ::grpc::ServerUnaryReactor* Handle(::grpc::CallbackServerContext* ctx, const chain::Request* req,
                                     chain::Reply* reply) override {
    return weft::grpc::serve(ex_, chain_example::propagator(), ctx, [this, req, reply] {
      spdlog::info("handle '{}'; deadline in {} ms", req->text(),
                   chain_example::deadline_left_ms());
      chain_example::describe(reply);
      auto span = weft::w3c::start_span();  // the backend call's span
      ::grpc::ClientContext call;
      const ::grpc::Status s = weft::grpc::call(chain_example::propagator(), call, [&](auto done) {
        backend_->async()->Work(&call, req, reply->mutable_backend(), std::move(done));
      });
      spdlog::info("backend answered: {}", s.ok() ? "OK" : s.error_message());
      reply->set_text("edge passed on '" + req->text() + "'");
      return s;
    });
  }

 private:
  weft::executor& ex_;
  std::unique_ptr<chain::Backend::Stub> backend_;
};

}  // namespace

int main(int argc, char** argv) {
  int port = 0, backend_port = 0;
  unsigned threads = 2;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--port") {
      port = int(example::parse_number("grpc_chain_edge", "--port", v, 0, 65535));
      ++i;
    } else if (a == "--backend") {
      backend_port = int(example::parse_number("grpc_chain_edge", "--backend", v, 1, 65535));
      ++i;
    } else if (a == "--threads") {
      threads = unsigned(example::parse_number("grpc_chain_edge", "--threads", v, 1, 1024));
      ++i;
    } else {
      std::printf("usage: grpc_chain_edge --backend PORT [--port N] [--threads N]\n");
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  if (backend_port == 0) {
    std::fprintf(stderr, "grpc_chain_edge: --backend PORT is required\n");
    return 2;
  }
  chain_example::start_logging("edge");
  weft::executor ex(threads);
  edge service(ex, backend_port);
  return chain_example::serve_until_signalled("edge", &service, port, ex);
}
