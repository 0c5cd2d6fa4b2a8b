// grpc_chain client: sets a request id, starts a trace, adds baggage and a deadline, and
// calls the edge from a weft fiber; prints what each service saw.
//
//   ./build/examples/grpc_chain_client --edge PORT [--request-id ID] [--deadline-ms N]
//                                      [--work-ms N]
// Exit status: 0 if the call succeeded, 1 if it failed (a deadline, for one), 2 for bad flags.
#include <string>

#include "../cli.hpp"
#include "chain_common.hpp"

namespace {

void print(const char* who, const chain::Reply& r) {
  std::printf("%s: request_id=%s trace=%s parent_span=%s deadline_ms=%lld baggage=%s\n", who,
              r.request_id().c_str(), r.trace_id().c_str(), r.parent_span().c_str(),
              static_cast<long long>(r.deadline_ms()), r.baggage().c_str());
}

}  // namespace

int main(int argc, char** argv) {
  int edge_port = 0;
  long deadline_ms = 5000, work_ms = 10;
  std::string id = "req-1";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--edge") {
      edge_port = int(example::parse_number("grpc_chain_client", "--edge", v, 1, 65535));
      ++i;
    } else if (a == "--request-id" && v != nullptr) {
      id = v;
      ++i;
    } else if (a == "--deadline-ms") {
      deadline_ms = example::parse_number("grpc_chain_client", "--deadline-ms", v, 1, 86400000);
      ++i;
    } else if (a == "--work-ms") {
      work_ms = example::parse_number("grpc_chain_client", "--work-ms", v, 0, 86400000);
      ++i;
    } else {
      std::printf(
          "usage: grpc_chain_client --edge PORT [--request-id ID] [--deadline-ms N] "
          "[--work-ms N]\n");
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  if (edge_port == 0) {
    std::fprintf(stderr, "grpc_chain_client: --edge PORT is required\n");
    return 2;
  }
  chain_example::start_logging("client");
  auto edge = chain::Edge::NewStub(::grpc::CreateChannel("127.0.0.1:" + std::to_string(edge_port),
                                                         ::grpc::InsecureChannelCredentials()));
  weft::executor ex(1);
  return ex.run([&] {
    auto rid = example::request_id.scoped(id);
    auto span = weft::w3c::start_span();  // a new trace, and the client's span in it
    auto bag = weft::w3c::baggage.scoped({{{"tenant", "acme"}, {"origin", "grpc_chain client"}}});
    spdlog::info("calling the edge: deadline {} ms, work {} ms", deadline_ms, work_ms);
    chain::Request req;
    req.set_text("hello");
    req.set_work_ms(int(work_ms));
    chain::Reply reply;
    try {
      const ::grpc::Status s = weft::with_timeout(std::chrono::milliseconds(deadline_ms), [&] {
        ::grpc::ClientContext ctx;
        return weft::grpc::call(chain_example::propagator(), ctx, [&](auto done) {
          edge->async()->Handle(&ctx, &req, &reply, std::move(done));
        });
      });
      if (!s.ok()) {
        spdlog::error("call failed: {} ({})", s.error_message(), int(s.error_code()));
        return 1;
      }
    } catch (const weft::error& e) {
      spdlog::error("call failed: {}", e.what());
      return 1;
    }
    std::printf("client: request_id=%s trace=%s\n", id.c_str(), chain_example::trace_id().c_str());
    print("edge", reply);
    print("backend", reply.backend());
    return 0;
  });
}
