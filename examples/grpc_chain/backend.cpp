// grpc_chain backend: the last service of client -> edge -> backend. Its handler is plain
// sequential code on a weft fiber: it logs (the request id and trace arrive with the call),
// "works" for as long as the request asks, and stops early when the deadline the client set
// -- shrunk by the edge on the way -- runs out or the call is cancelled.
//
//   ./build/examples/grpc_chain_backend [--port N] [--threads N]
#include <string>

#include "../cli.hpp"
#include "chain_common.hpp"

namespace {

class backend final : public chain::Backend::CallbackService {
 public:
  explicit backend(weft::executor& ex) : ex_(ex) {}

  ::grpc::ServerUnaryReactor* Work(::grpc::CallbackServerContext* ctx, const chain::Request* req,
                                   chain::Reply* reply) override {
    return weft::grpc::serve(ex_, chain_example::propagator(), ctx, [req, reply] {
      spdlog::info("work '{}' for {} ms; deadline in {} ms", req->text(), req->work_ms(),
                   chain_example::deadline_left_ms());
      chain_example::describe(reply);
      try {
        weft::this_fiber::sleep_for(std::chrono::milliseconds(req->work_ms()));
      } catch (const weft::error& e) {
        spdlog::warn("work stopped: {}", e.what());
        throw;  // becomes DEADLINE_EXCEEDED or CANCELLED
      }
      reply->set_text("worked on '" + req->text() + "'");
      spdlog::info("work done");
      return ::grpc::Status::OK;
    });
  }

 private:
  weft::executor& ex_;
};

}  // namespace

int main(int argc, char** argv) {
  int port = 0;
  unsigned threads = 2;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--port") {
      port = int(example::parse_number("grpc_chain_backend", "--port", v, 0, 65535));
      ++i;
    } else if (a == "--threads") {
      threads = unsigned(example::parse_number("grpc_chain_backend", "--threads", v, 1, 1024));
      ++i;
    } else {
      std::printf("usage: grpc_chain_backend [--port N] [--threads N]\n");
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  chain_example::start_logging("backend");
  weft::executor ex(threads);
  backend service(ex);
  return chain_example::serve_until_signalled("backend", &service, port, ex);
}
