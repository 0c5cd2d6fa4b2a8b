// http_service: an HTTP/1.1 service on Boost.Beast, one weft fiber per connection.
//
// Each handler is plain sequential code: it reads a request, works, writes a response --
// waiting on sockets with weft::use_fiber, on a slow blocking library with weft::offload, on
// sub-tasks with a task_group -- and never passes the request id around: it is a context_var,
// set from the X-Request-Id header (or generated), read by every log line (a spdlog flag)
// and every downstream call. It speaks W3C Trace Context and Baggage too: a request's
// traceparent/baggage headers are its trace and baggage (weft::propagator), each request runs
// under a span of its own, and downstream calls carry them on.
//
//   GET /hello          a greeting
//   GET /slow?ms=N      calls a blocking dependency (N ms, default 50) through offload()
//   GET /fanout?n=N     N downstream calls at once in a task_group, their answers joined
//
// Every request runs under a deadline (--deadline-ms, default 2000): past it the handler
// stops at its next wait and the client gets 504. --no-deadline, --no-context and --no-log
// turn one feature off each, to measure what it costs per request (scripts/bench).
// SIGINT/SIGTERM: stop accepting, let in-flight requests finish, close idle connections,
// exit 0.
//
// Run: ./build/examples/http_service --port 8080 --threads 2
//      curl -H 'X-Request-Id: abc' localhost:8080/fanout?n=3
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <weft/asio.hpp>
#include <weft/propagation.hpp>
#include <weft/weft.hpp>

#include "cli.hpp"
#include "request_log.hpp"

namespace asio = boost::asio;
namespace http = boost::beast::http;
using asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

using example::request_id;

struct options {
  unsigned short port = 8080;
  unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  long deadline_ms = 2000;
  bool quiet = false;
  // Each feature can be turned off, to measure what it costs per request (scripts/bench).
  bool deadline = true;  // with_timeout around each handler
  bool context = true;   // request id, W3C trace and baggage bound in the request's context
  bool log = true;       // the per-request log lines (--quiet keeps the formatting cost off too)
  std::string log_file;  // log there (buffered) instead of to stderr (a write per line)
};

void usage(std::FILE* to) {
  std::fprintf(to,
               "usage: http_service [--port N] [--threads N] [--deadline-ms N] [--quiet]\n"
               "                    [--no-deadline] [--no-context] [--no-log] [--log-file PATH]\n"
               "  --port N         TCP port on 127.0.0.1 (default 8080; 0 picks a free one)\n"
               "  --threads N      worker threads (default: the number of cores)\n"
               "  --deadline-ms N  each request's deadline (default 2000)\n"
               "  --quiet          log warnings only (for load tests)\n"
               "  --no-deadline    no deadline per request\n"
               "  --no-context     no request id, trace or baggage in the request's context\n"
               "  --no-log         no log lines at all\n"
               "  --log-file PATH  log to PATH (appended, buffered, flushed every second and on\n"
               "                   warnings) instead of to stderr, which writes each line at once\n"
               "(the --no-* options measure what each feature costs per request)\n"
               "Prints 'listening on port N' once it accepts connections.\n");
}

long parse_number(const char* flag, const char* text, long min, long max) {
  return example::parse_number("http_service", flag, text, min, max);
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--help" || a == "-h") {
      usage(stdout);
      std::exit(0);
    } else if (a == "--port") {
      o.port = static_cast<unsigned short>(parse_number("--port", value, 0, 65535));
      ++i;
    } else if (a == "--threads") {
      o.threads = unsigned(parse_number("--threads", value, 1, 1024));
      ++i;
    } else if (a == "--quiet") {
      o.quiet = true;
    } else if (a == "--no-deadline") {
      o.deadline = false;
    } else if (a == "--no-context") {
      o.context = false;
    } else if (a == "--no-log") {
      o.log = false;
    } else if (a == "--log-file") {
      if (value == nullptr) {
        std::fprintf(stderr, "http_service: --log-file needs a path\n");
        std::exit(2);
      }
      o.log_file = value;
      ++i;
    } else if (a == "--deadline-ms") {
      o.deadline_ms = parse_number("--deadline-ms", value, 1, 86400000);
      ++i;
    } else {
      std::fprintf(stderr, "http_service: unknown option '%s'\n", a.c_str());
      usage(stderr);
      std::exit(2);
    }
  }
  return o;
}

// query_number() reads ?name=N from a target, or fallback.
long query_number(std::string_view target, std::string_view name, long fallback, long max) {
  const auto q = target.find('?');
  if (q == std::string_view::npos) return fallback;
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    const auto amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    if (pair.substr(0, name.size()) == name && pair.size() > name.size() &&
        pair[name.size()] == '=') {
      const std::string v(pair.substr(name.size() + 1));
      char* end = nullptr;
      const long n = std::strtol(v.c_str(), &end, 10);
      if (end != v.c_str() && *end == '\0' && n >= 0) return std::min(n, max);
      return fallback;
    }
    if (amp == std::string_view::npos) break;
    rest = rest.substr(amp + 1);
  }
  return fallback;
}

std::string next_request_id() {
  static std::atomic<unsigned long> counter{0};
  static const unsigned long start = static_cast<unsigned long>(::getpid()) << 20;
  return "gen-" + std::to_string(start + ++counter);
}

// ---- what the handlers call ------------------------------------------------------------

// blocking_dependency() stands for a library call that blocks its thread (a legacy client, a
// file read); it logs with the caller's request id, on a blocking-pool thread.
std::string blocking_dependency(long ms) {
  spdlog::info("blocking dependency: working {} ms", ms);
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return "done after " + std::to_string(ms) + " ms for " + request_id.get();
}

// The request id travels as X-Request-Id; the trace and baggage as traceparent, tracestate
// and baggage (W3C).
const weft::propagator& http_propagator() {
  static const weft::propagator p = [] {
    weft::propagator q = weft::propagator::standard();
    q.add(request_id, "x-request-id");
    return q;
  }();
  return p;
}

// incoming_context() is the context a request brings in its headers (names are matched
// without regard to case).
weft::context incoming_context(const http::request<http::string_body>& req) {
  return http_propagator().extract([&req](std::string_view key) -> std::optional<std::string> {
    const auto h = req.find(boost::beast::string_view(key.data(), key.size()));
    if (h == req.end()) return std::nullopt;
    return std::string(h->value());
  });
}

// downstream_call() stands for a call to another service: under a span of its own it
// writes the headers a real client would send -- request id, traceparent, baggage -- and
// waits without holding a worker.
std::string downstream_call(int part) {
  auto span = weft::w3c::start_span();
  std::string headers;
  http_propagator().inject([&headers](std::string_view k, std::string_view v) {
    headers += std::string(k) + ": " + std::string(v) + "; ";
  });
  weft::this_fiber::sleep_for(std::chrono::milliseconds(5 + part % 5));
  spdlog::info("downstream part {} answered (sent {})", part, headers);
  return "part " + std::to_string(part) + " of " + request_id.get();
}

// ---- the service -------------------------------------------------------------------------

struct connection_registry;

// A connection is served by one fiber; the registry lets shutdown close the idle ones.
struct connection {
  explicit connection(tcp::socket s) : socket(std::move(s)) {}
  tcp::socket socket;
  std::atomic<bool> idle{true};  // waiting for the next request
};

struct connection_registry {
  std::mutex mutex;  // guards `open`
  std::set<connection*> open;
  std::atomic<bool> stopping{false};

  // close_idle() ends the reading side of idle connections: a pending read of the next
  // request -- or one about to start -- sees end of file. Busy ones finish their request, see
  // `stopping` and close. (A registered connection's descriptor is open: it unregisters
  // before its socket closes.) No lock per request: a connection stores `idle` then loads
  // `stopping`, this stores `stopping` then loads `idle`, all seq_cst -- one of the two sees
  // the other's store, so a connection that goes idle is either shut here or sees `stopping`.
  void close_idle() {
    stopping.store(true);
    std::lock_guard<std::mutex> g(mutex);
    for (connection* c : open) {
      if (c->idle.load()) ::shutdown(c->socket.native_handle(), SHUT_RD);
    }
  }
};

http::response<http::string_body> handle(const http::request<http::string_body>& req,
                                         const options& o) {
  http::response<http::string_body> res{http::status::ok, req.version()};
  res.set(http::field::content_type, "text/plain");
  res.set("X-Request-Id", request_id.get());
  const std::string_view target = req.target();
  auto work = [&] {
    if (target == "/hello") {
      res.body() = "hello, " + request_id.get() + "\n";
    } else if (target.substr(0, 5) == "/slow") {
      res.body() = weft::offload(blocking_dependency, query_number(target, "ms", 50, 10000)) + "\n";
      weft::this_fiber::throw_if_cancelled();  // the deadline passed while it ran
    } else if (target.substr(0, 7) == "/fanout") {
      const long n = query_number(target, "n", 4, 64);
      std::vector<std::string> parts(static_cast<std::size_t>(n));
      weft::task_group calls;
      for (long i = 0; i < n; ++i) {
        calls.spawn([&parts, i] { parts[std::size_t(i)] = downstream_call(int(i)); });
      }
      calls.wait();
      for (const auto& p : parts)
        res.body() += p + "\n";
    } else {
      res.result(http::status::not_found);
      res.body() = "not found\n";
    }
  };
  try {
    if (o.deadline) {
      weft::with_timeout(std::chrono::milliseconds(o.deadline_ms), work);
    } else {
      work();
    }
  } catch (const weft::error& e) {
    if (e.code() != weft::errc::deadline_exceeded) throw;
    spdlog::warn("deadline of {} ms exceeded", o.deadline_ms);
    res.result(http::status::gateway_timeout);
    res.body() = "deadline exceeded\n";
  }
  res.keep_alive(req.keep_alive());
  res.prepare_payload();
  return res;
}

void serve(tcp::socket socket, connection_registry& registry, const options& o) {
  connection conn(std::move(socket));
  {
    std::lock_guard<std::mutex> g(registry.mutex);
    if (registry.stopping) return;
    registry.open.insert(&conn);
  }
  struct unregister {
    connection_registry& r;
    connection* c;
    ~unregister() {
      std::lock_guard<std::mutex> g(r.mutex);
      r.open.erase(c);
    }
  } guard{registry, &conn};

  boost::beast::flat_buffer buffer;
  for (;;) {
    http::request<http::string_body> req;
    boost::system::error_code ec;
    http::async_read(conn.socket, buffer, req, asio::redirect_error(weft::use_fiber, ec));
    if (ec) return;  // closed by the peer, or cancelled by shutdown while idle
    conn.idle.store(false);
    bool last = registry.stopping.load();
    // The request's context, from its headers: the request id (or a made-up one), and the
    // caller's W3C trace and baggage. Every fiber it spawns and every log line below sees it.
    bool keep_alive = true;
    auto respond = [&] {
      if (o.log) {
        spdlog::info("{} {}", std::string(req.method_string()), std::string(req.target()));
      }
      auto res = handle(req, o);
      if (last) res.keep_alive(false);
      keep_alive = res.keep_alive();
      http::async_write(conn.socket, res, asio::redirect_error(weft::use_fiber, ec));
      if (o.log) spdlog::info("{} {} bytes", res.result_int(), res.body().size());
    };
    if (o.context) {
      incoming_context(req).run([&] {
        if (req.find("X-Request-Id") == req.end()) (void)request_id.set(next_request_id());
        auto span = weft::w3c::start_span();  // this request's span: a child of the caller's
        respond();
      });
    } else {
      respond();
    }
    conn.idle.store(true);
    last = last || registry.stopping.load();
    if (ec || !keep_alive || last) break;
  }
  boost::system::error_code ignored;
  conn.socket.shutdown(tcp::socket::shutdown_both, ignored);
}

// serve_all() runs the service until SIGINT/SIGTERM and every connection closed.
void serve_all(const options& o) {
  weft::executor ex(o.threads);
  auto& io = weft::io_context(ex);
  connection_registry registry;
  ex.run([&] {
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::address_v4::loopback(), o.port));
    std::printf("listening on port %u\n", unsigned(acceptor.local_endpoint().port()));
    std::fflush(stdout);
    spdlog::info("http_service: {} threads, deadline {} ms", o.threads, o.deadline_ms);

    weft::task_group connections;
    // SIGINT/SIGTERM: stop accepting; in-flight requests finish; idle connections close.
    asio::signal_set signals(io, SIGINT, SIGTERM);
    std::atomic<bool> stopping{false};
    connections.spawn([&] {
      boost::system::error_code ec;
      const int sig = signals.async_wait(asio::redirect_error(weft::use_fiber, ec));
      if (ec) return;
      spdlog::info("signal {}: shutting down", sig);
      stopping = true;
      asio::post(io, [&] { acceptor.close(); });
      registry.close_idle();
    });
    while (!stopping) {
      boost::system::error_code ec;
      tcp::socket s = acceptor.async_accept(asio::redirect_error(weft::use_fiber, ec));
      if (ec) {
        if (stopping) break;
        spdlog::warn("accept failed: {}", ec.message());
        continue;
      }
      connections.spawn(serve, std::move(s), std::ref(registry), std::cref(o));
    }
    connections.wait();
    spdlog::info("http_service: all connections closed");
  });
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  // Log lines go to stderr (stdout says where the service listens) or to --log-file, each with
  // the request id. stderr is unbuffered: a write() per line, which costs more than the line.
  if (o.log_file.empty()) {
    spdlog::set_default_logger(spdlog::stderr_color_mt("http_service"));
  } else {
    try {
      spdlog::set_default_logger(std::make_shared<spdlog::logger>(
          "http_service", std::make_shared<example::file_sink>(o.log_file)));
    } catch (const spdlog::spdlog_ex& e) {
      std::fprintf(stderr, "http_service: cannot log to %s: %s\n", o.log_file.c_str(), e.what());
      return 2;
    }
    spdlog::flush_on(spdlog::level::warn);
    spdlog::flush_every(std::chrono::seconds(1));
  }
  example::log_with_request_id("[%H:%M:%S.%e] [%*] [%&] %v");
  if (o.quiet) spdlog::set_level(spdlog::level::warn);
  if (!o.log) spdlog::set_level(spdlog::level::off);

  try {
    serve_all(o);
  } catch (const std::exception& e) {  // the port is taken, ...
    spdlog::critical("http_service: {}", e.what());
    spdlog::shutdown();
    std::fprintf(stderr, "http_service: %s\n", e.what());
    return 1;
  }
  spdlog::shutdown();  // flushes --log-file and stops its flusher thread
  return 0;
}
