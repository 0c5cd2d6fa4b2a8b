// Tests of weft-grpc (API.md "Crossing process boundaries"): an edge -> backend chain over
// loopback gRPC, in process, on 1, 2 and 4 workers.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/post.hpp>

#include <weft/asio.hpp>
#include <weft/grpc.hpp>
#include <weft/weft.hpp>

#include "chain.grpc.pb.h"
#include "test_support.hpp"

using namespace std::chrono_literals;
using test::eventually;

namespace {

weft::context_var<std::string> request_id("grpc.request_id");

weft::propagator make_propagator() {
  weft::propagator p = weft::propagator::standard();
  p.add(request_id, "x-request-id");
  return p;
}
const weft::propagator prop = make_propagator();

// trace_id() / span_id() are the hex fields of a traceparent ("00-<trace>-<span>-<flags>").
std::string trace_id(const weft::w3c::traceparent& t) {
  return t.to_string().substr(3, 32);
}
std::string span_id(const weft::w3c::traceparent& t) {
  return t.to_string().substr(36, 16);
}

// describe() fills what the answering service sees of the request's context.
void describe(chain::Reply* reply) {
  reply->set_request_id(request_id.get_or("<none>"));
  if (const auto* t = weft::w3c::trace.try_get()) {
    reply->set_trace_id(trace_id(t->parent));
    reply->set_parent_span(span_id(t->parent));
  }
  if (const auto* b = weft::w3c::baggage.try_get()) {
    std::ostringstream text;
    text << *b;
    reply->set_baggage(text.str());
  }
  const auto d = weft::this_fiber::deadline();
  reply->set_deadline_ms(d ? std::chrono::duration_cast<std::chrono::milliseconds>(
                                 *d - std::chrono::steady_clock::now())
                                 .count()
                           : -1);
}

// The backend works (sleeps) as long as asked; it records how its work ended.
struct backend_service final : chain::Backend::CallbackService {
  explicit backend_service(weft::executor& ex) : ex_(ex) {}
  ::grpc::ServerUnaryReactor* Work(::grpc::CallbackServerContext* ctx, const chain::Request* req,
                                   chain::Reply* reply) override {
    return weft::grpc::serve(ex_, prop, ctx, [this, req, reply] {
      describe(reply);
      if (const auto* t = weft::w3c::trace.try_get()) {
        std::lock_guard<std::mutex> g(seen_mutex);
        seen_tracestate = t->state.to_string();
      }
      if (req->text() == "throw big") throw std::runtime_error(std::string(100000, 'x'));
      ++started;
      try {
        weft::this_fiber::sleep_for(std::chrono::milliseconds(req->work_ms()));
      } catch (const weft::error& e) {
        if (e.code() == weft::errc::cancelled) ++cancelled;
        if (e.code() == weft::errc::deadline_exceeded) ++out_of_time;
        throw;
      }
      ++finished;
      reply->set_text("backend: " + req->text());
      return ::grpc::Status::OK;
    });
  }
  weft::executor& ex_;
  std::atomic<int> started{0}, finished{0}, cancelled{0}, out_of_time{0};
  std::mutex seen_mutex;
  std::string seen_tracestate;  // of the last request with a trace
};

// The edge calls the backend under a span of its own.
struct edge_service final : chain::Edge::CallbackService {
  edge_service(weft::executor& ex, std::shared_ptr<::grpc::Channel> backend)
      : ex_(ex), backend_(chain::Backend::NewStub(backend)) {}
  ::grpc::ServerUnaryReactor* Handle(::grpc::CallbackServerContext* ctx, const chain::Request* req,
                                     chain::Reply* reply) override {
    return weft::grpc::serve(ex_, prop, ctx, [this, req, reply] {
      describe(reply);
      auto span = weft::w3c::start_span();
      ::grpc::ClientContext call;
      ::grpc::Status s = weft::grpc::call(prop, call, [&](auto done) {
        backend_->async()->Work(&call, req, reply->mutable_backend(), std::move(done));
      });
      reply->set_text("edge: " + req->text());
      return s;
    });
  }
  weft::executor& ex_;
  std::unique_ptr<chain::Backend::Stub> backend_;
};

// chain is a backend server and an edge server, each on its own executor and port.
struct chain_servers {
  explicit chain_servers(unsigned threads)
      : backend_ex(threads), edge_ex(threads), backend(backend_ex) {
    backend_server = start(&backend, backend_port);
    edge = std::make_unique<edge_service>(
        edge_ex, ::grpc::CreateChannel("127.0.0.1:" + std::to_string(backend_port),
                                       ::grpc::InsecureChannelCredentials()));
    edge_server = start(edge.get(), edge_port);
    edge_stub = chain::Edge::NewStub(::grpc::CreateChannel("127.0.0.1:" + std::to_string(edge_port),
                                                           ::grpc::InsecureChannelCredentials()));
  }
  ~chain_servers() {
    edge_server->Shutdown();
    backend_server->Shutdown();
  }
  static std::unique_ptr<::grpc::Server> start(::grpc::Service* s, int& port) {
    ::grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", ::grpc::InsecureServerCredentials(), &port);
    b.RegisterService(s);
    auto server = b.BuildAndStart();
    REQUIRE(server);
    REQUIRE(port > 0);
    return server;
  }
  // handle() calls the edge from the calling fiber or thread.
  ::grpc::Status handle(const std::string& text, int work_ms, chain::Reply& reply) {
    ::grpc::ClientContext ctx;
    chain::Request req;
    req.set_text(text);
    req.set_work_ms(work_ms);
    return weft::grpc::call(prop, ctx, [&](auto done) {
      edge_stub->async()->Handle(&ctx, &req, &reply, std::move(done));
    });
  }

  weft::executor backend_ex, edge_ex;
  backend_service backend;
  std::unique_ptr<edge_service> edge;
  int backend_port = 0, edge_port = 0;
  std::unique_ptr<::grpc::Server> backend_server, edge_server;
  std::unique_ptr<chain::Edge::Stub> edge_stub;
};

}  // namespace

TEST_CASE("request id, trace, baggage and deadline travel client -> edge -> backend", "[grpc]") {
  const unsigned threads = GENERATE(1u, 2u, 4u);
  chain_servers chain(threads);
  auto r = request_id.scoped("req-42");
  auto span = weft::w3c::start_span();
  auto bag = weft::w3c::baggage.scoped({{{"tenant", "acme corp"}}});
  const weft::w3c::traceparent mine = weft::w3c::trace.get().parent;
  chain::Reply reply;
  const ::grpc::Status s = weft::with_timeout(10s, [&] { return chain.handle("hi", 0, reply); });
  REQUIRE(s.ok());
  CHECK(reply.text() == "edge: hi");
  CHECK(reply.backend().text() == "backend: hi");
  CHECK(reply.request_id() == "req-42");
  CHECK(reply.backend().request_id() == "req-42");
  CHECK(reply.trace_id() == trace_id(mine));
  CHECK(reply.backend().trace_id() == reply.trace_id());
  CHECK(reply.parent_span() == span_id(mine));                  // the client's span
  CHECK(reply.backend().parent_span() != reply.parent_span());  // the edge's own span
  CHECK(reply.baggage() == "tenant=acme corp");
  CHECK(reply.backend().baggage() == "tenant=acme corp");
  // The deadline shrinks along the way -- as gRPC sends it: a relative timeout, rounded up
  // to a coarser unit as it grows (10 s goes as 10.1 s), so allow 2% and a few ms.
  const auto within = [](std::int64_t callee, std::int64_t caller) {
    return callee <= caller + caller / 50 + 5;
  };
  CHECK(reply.deadline_ms() > 0);
  CHECK(within(reply.deadline_ms(), 10000));
  CHECK(reply.backend().deadline_ms() > 0);
  CHECK(within(reply.backend().deadline_ms(), reply.deadline_ms()));
}

TEST_CASE("without a deadline or context, the services see none", "[grpc]") {
  chain_servers chain(2);
  chain::Reply reply;
  REQUIRE(chain.handle("plain", 0, reply).ok());
  CHECK(reply.request_id() == "<none>");
  CHECK(reply.deadline_ms() == -1);
  CHECK(reply.backend().deadline_ms() == -1);
  CHECK(reply.trace_id().empty());
  // The edge started a trace of its own for its call.
  CHECK(!reply.backend().trace_id().empty());
}

TEST_CASE("a deadline set by the client ends the backend's work", "[grpc]") {
  const unsigned threads = GENERATE(1u, 2u, 4u);
  chain_servers chain(threads);
  weft::executor client(1);
  const auto began = std::chrono::steady_clock::now();
  client.run([&] {
    chain::Reply reply;
    try {
      const ::grpc::Status s =
          weft::with_timeout(300ms, [&] { return chain.handle("slow", 60000, reply); });
      CHECK(s.error_code() == ::grpc::StatusCode::DEADLINE_EXCEEDED);
    } catch (const weft::error& e) {
      CHECK(e.code() == weft::errc::deadline_exceeded);
    }
  });
  // The backend was told: its sleep ended long before its 60 s.
  REQUIRE(eventually([&] { return chain.backend.cancelled + chain.backend.out_of_time == 1; }));
  CHECK(chain.backend.started == 1);
  CHECK(chain.backend.finished == 0);
  CHECK(std::chrono::steady_clock::now() - began < 30s);
}

TEST_CASE("cancelling the calling fiber cancels the call down the chain", "[grpc]") {
  const unsigned threads = GENERATE(1u, 2u, 4u);
  chain_servers chain(threads);
  weft::executor client(2);
  std::atomic<weft::task_group*> group{nullptr};
  std::atomic<int> outcome{-1};
  auto caller = client.spawn([&] {
    weft::task_group g;
    g.spawn([&] {
      chain::Reply reply;
      try {
        (void)chain.handle("cancel me", 60000, reply);
        outcome = 0;
      } catch (const weft::error& e) {
        outcome = e.code().value();
        throw;
      }
    });
    group = &g;
    try {
      g.wait();
    } catch (const weft::error&) {
    }
  });
  REQUIRE(eventually([&] { return chain.backend.started == 1 && group.load() != nullptr; }));
  // The caller waits on the call's channel, and says so.
  CHECK(eventually([&] { return test::parked_on(client, "channel gRPC call: recv"); }));
  group.load()->cancel();
  caller.get();
  CHECK(outcome == int(weft::errc::cancelled));
  REQUIRE(eventually([&] { return chain.backend.cancelled == 1; }));
  CHECK(chain.backend.finished == 0);
}

TEST_CASE("malformed metadata is ignored, the rest is used", "[grpc]") {
  chain_servers chain(2);
  auto stub = chain::Backend::NewStub(::grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(chain.backend_port), ::grpc::InsecureChannelCredentials()));
  ::grpc::ClientContext ctx;  // a plain gRPC client, not weft's
  ctx.AddMetadata("x-request-id", "raw-1");
  ctx.AddMetadata("traceparent", "00-not-a-trace-01");
  ctx.AddMetadata("tracestate", "Bad Key=1");
  ctx.AddMetadata("baggage", "a=1,,=");
  chain::Request req;
  req.set_text("raw");
  chain::Reply reply;
  REQUIRE(stub->Work(&ctx, req, &reply).ok());
  CHECK(reply.request_id() == "raw-1");
  CHECK(reply.trace_id().empty());
  CHECK(reply.baggage().empty());
}

TEST_CASE("hundreds of concurrent calls from fibers each keep their own context", "[grpc]") {
  const unsigned threads = GENERATE(1u, 2u, 4u);
  chain_servers chain(threads);
  weft::executor client(2);
  std::atomic<int> wrong{0}, ok{0};
  client.run([&] {
    weft::task_group g;
    for (int i = 0; i < 200; ++i) {
      g.spawn([&, i] {
        auto r = request_id.scoped("req-" + std::to_string(i));
        chain::Reply reply;
        if (!chain.handle("n", i % 3, reply).ok()) return;
        ++ok;
        if (reply.request_id() != "req-" + std::to_string(i) ||
            reply.backend().request_id() != reply.request_id()) {
          ++wrong;
        }
        // After the call, on whichever worker: still this fiber's own context.
        if (request_id.get() != "req-" + std::to_string(i)) ++wrong;
      });
    }
  });
  CHECK(ok == 200);
  CHECK(wrong == 0);
}

TEST_CASE("repeated baggage and tracestate metadata are combined, not cut to the first", "[grpc]") {
  chain_servers chain(2);
  auto stub = chain::Backend::NewStub(::grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(chain.backend_port), ::grpc::InsecureChannelCredentials()));
  ::grpc::ClientContext ctx;  // a plain gRPC client, not weft's
  ctx.AddMetadata("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  ctx.AddMetadata("tracestate", "rojo=1,congo=2");
  ctx.AddMetadata("tracestate", "blau=3");
  ctx.AddMetadata("baggage", "a=1,b=2");
  ctx.AddMetadata("baggage", "c=3");
  chain::Request req;
  req.set_text("repeated");
  chain::Reply reply;
  REQUIRE(stub->Work(&ctx, req, &reply).ok());
  CHECK(reply.baggage() == "a=1,b=2,c=3");
  std::lock_guard<std::mutex> g(chain.backend.seen_mutex);
  CHECK(chain.backend.seen_tracestate == "rojo=1,congo=2,blau=3");
}

TEST_CASE("a handler's long what() reaches the client cut to 1 KiB, and the channel stays usable",
          "[grpc]") {
  chain_servers chain(2);
  auto stub = chain::Backend::NewStub(::grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(chain.backend_port), ::grpc::InsecureChannelCredentials()));
  for (int round = 0; round < 3; ++round) {
    ::grpc::ClientContext ctx;
    chain::Request req;
    req.set_text("throw big");
    chain::Reply reply;
    const ::grpc::Status s = stub->Work(&ctx, req, &reply);
    CHECK(s.error_code() == ::grpc::StatusCode::UNKNOWN);
    CHECK(s.error_message().size() <= 1024);
    CHECK(s.error_message().rfind("xxxxxxxx", 0) == 0);
    ::grpc::ClientContext next;
    req.set_text("after");
    CHECK(stub->Work(&next, req, &reply).ok());
  }
}

namespace {

// scribble() overwrites the stack below its caller, where a finished call's frame was.
[[gnu::noinline]] void scribble() {
  volatile unsigned char junk[16384];
  for (auto& b : junk)
    b = 1;
}

}  // namespace

TEST_CASE(
    "grpc::call whose start throws after taking the completion: a late completion is "
    "harmless",
    "[grpc]") {
  ::grpc::ClientContext ctx;
  std::optional<std::function<void(::grpc::Status)>> kept;
  CHECK_THROWS_WITH(weft::grpc::call(prop, ctx,
                                     [&](auto done) {
                                       kept = std::move(done);
                                       throw std::runtime_error("start failed");
                                     }),
                    "start failed");
  scribble();
  // The completion runs long after call() threw; it must touch nothing of call()'s frame.
  std::atomic<bool> ran{false};
  std::thread late([&] {
    (*kept)(::grpc::Status::OK);
    kept.reset();
    ran = true;
  });
  const bool finished = eventually([&] { return ran.load(); }, 10s);
  CHECK(finished);
  if (finished) {
    late.join();
  } else {
    late.detach();  // stuck on the old frame's memory: the defect this test is about
  }
}

TEST_CASE("grpc::call whose start throws after issuing the call waits for gRPC to let it go",
          "[grpc]") {
  chain_servers chain(2);
  ::grpc::ClientContext ctx;
  chain::Request req;
  req.set_text("thrown");
  req.set_work_ms(60000);
  chain::Reply reply;
  std::atomic<bool> completed{false};
  CHECK_THROWS_WITH(
      weft::grpc::call(prop, ctx,
                       [&](auto done) {
                         chain.edge_stub->async()->Handle(
                             &ctx, &req, &reply,
                             [&completed, d = std::move(done)](::grpc::Status s) {
                               completed = true;
                               d(std::move(s));
                             });
                         // Once the call is under way down the chain.
                         REQUIRE(eventually([&] { return chain.backend.started == 1; }));
                         throw std::runtime_error("start failed");
                       }),
      "start failed");
  CHECK(completed);  // gRPC was done with ctx, req and reply before call() threw
  REQUIRE(eventually([&] { return chain.backend.cancelled == 1; }));
}

TEST_CASE("grpc::call whose completion is destroyed uncalled returns an error status", "[grpc]") {
  weft::executor ex(1);
  auto check = [] {
    ::grpc::ClientContext ctx;
    const ::grpc::Status s = weft::grpc::call(prop, ctx, [](auto done) {
      auto copy = done;  // every copy goes uncalled
      (void)copy;
    });
    CHECK(s.error_code() == ::grpc::StatusCode::CANCELLED);
    CHECK(s.error_message().find("destroyed without being called") != std::string::npos);
  };
  check();  // a plain thread
  ex.run(check);
  // Later, on another thread: the caller is woken then.
  ex.run([] {
    ::grpc::ClientContext ctx;
    const ::grpc::Status s = weft::grpc::call(prop, ctx, [](auto done) {
      std::thread([d = std::move(done)]() mutable {
        std::this_thread::sleep_for(20ms);
        auto gone = std::move(d);
      }).detach();
    });
    CHECK(s.error_code() == ::grpc::StatusCode::CANCELLED);
  });
}

TEST_CASE("a deadline bounds grpc::call even when the completion is never called", "[grpc]") {
  weft::executor ex(2);
  std::vector<std::function<void(::grpc::Status)>> kept;  // never called until the end
  std::mutex kept_mutex;
  auto never = [&] {
    ::grpc::ClientContext ctx;
    const auto began = std::chrono::steady_clock::now();
    const int code = test::code_of([&] {
      weft::with_timeout(100ms, [&] {
        return weft::grpc::call(prop, ctx, [&](auto done) {
          std::lock_guard<std::mutex> g(kept_mutex);
          kept.push_back(std::move(done));
        });
      });
    });
    CHECK(code == int(weft::errc::deadline_exceeded));
    const auto took = std::chrono::steady_clock::now() - began;
    CHECK(took >= 100ms);
    CHECK(took < 5s);  // ~100 ms; generous for a busy machine
  };
  never();        // a plain thread
  ex.run(never);  // a fiber
  // Completions that come after their callers gave up touch nothing of theirs.
  for (auto& done : kept)
    done(::grpc::Status::OK);
}

TEST_CASE("a caller cancelled or out of time leaves grpc::call only once gRPC let the call go",
          "[grpc]") {
  const bool by_deadline = GENERATE(false, true);
  CAPTURE(by_deadline);
  chain_servers chain(2);
  weft::executor client(2);
  std::atomic<bool> completed{false};
  std::atomic<bool> completed_when_left{false};
  std::atomic<int> code{-1};
  client.run([&] {
    weft::task_group g;
    g.spawn([&] {
      ::grpc::ClientContext ctx;
      chain::Request req;
      req.set_text("slow");
      req.set_work_ms(60000);
      chain::Reply reply;
      auto issue = [&] {
        (void)weft::grpc::call(prop, ctx, [&](auto done) {
          chain.edge_stub->async()->Handle(&ctx, &req, &reply,
                                           [&completed, d = std::move(done)](::grpc::Status s) {
                                             // gRPC uses ctx, req and reply until it calls this,
                                             // which takes its time: a caller that left without
                                             // waiting for it would leave them to gRPC.
                                             std::this_thread::sleep_for(50ms);
                                             completed = true;
                                             d(std::move(s));
                                           });
        });
      };
      code = test::code_of([&] {
        if (by_deadline) {
          weft::with_timeout(200ms, issue);
        } else {
          issue();
        }
      });
      completed_when_left = completed.load();
    });
    if (!by_deadline) {
      REQUIRE(test::eventually_here([&] { return chain.backend.started == 1; }));
      g.cancel();
    }
    g.wait();
  });
  CHECK(code == int(by_deadline ? weft::errc::deadline_exceeded : weft::errc::cancelled));
  CHECK(completed_when_left);
  REQUIRE(eventually([&] { return chain.backend.cancelled + chain.backend.out_of_time == 1; }));
  CHECK(chain.backend.finished == 0);
}

TEST_CASE("grpc::call in an Asio handler on a worker throws would_deadlock before any call",
          "[grpc]") {
  weft::executor ex(1);
  std::atomic<int> code{-1};
  std::atomic<bool> started{false};
  boost::asio::post(weft::io_context(ex), [&] {
    ::grpc::ClientContext ctx;
    code = test::code_of([&] { (void)weft::grpc::call(prop, ctx, [&](auto) { started = true; }); });
  });
  REQUIRE(eventually([&] { return code.load() != -1; }));
  CHECK(code == int(weft::errc::would_deadlock));
  CHECK_FALSE(started);
  // From a fiber of the same executor, the same call is fine.
  const ::grpc::Status s = ex.run([] {
    ::grpc::ClientContext ctx;
    return weft::grpc::call(prop, ctx, [](auto done) { done(::grpc::Status::OK); });
  });
  CHECK(s.ok());
}
