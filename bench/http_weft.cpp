// http_weft: bench/http_coro.cpp's /hello endpoint on weft -- the same work, line for line:
// Beast parsing, the request id from X-Request-Id or generated, byte-identical responses,
// keep-alive, no logging, no deadline, no context binding. One fiber per connection, and
// weft::use_fiber on every call where the coroutine twin co_awaits. The HTTP benchmark runs it
// beside the coroutine server (runtime against runtime) and beside examples/http_service
// (what the service's features cost).
//
// usage: http_weft [--port N] [--threads N]   prints "listening on port N"; SIGINT/SIGTERM stop
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <weft/asio.hpp>
#include <weft/weft.hpp>

namespace asio = boost::asio;
namespace http = boost::beast::http;
using asio::ip::tcp;

namespace {

std::string next_request_id() {
  static std::atomic<unsigned long> counter{0};
  static const unsigned long start = static_cast<unsigned long>(::getpid()) << 20;
  return "gen-" + std::to_string(start + ++counter);
}

void session(tcp::socket s) {
  boost::beast::flat_buffer buffer;
  for (;;) {
    http::request<http::string_body> req;
    boost::system::error_code ec;
    http::async_read(s, buffer, req, asio::redirect_error(weft::use_fiber, ec));
    if (ec) break;
    const auto header = req.find("X-Request-Id");
    const std::string id = header != req.end() ? std::string(header->value()) : next_request_id();
    http::response<http::string_body> res{http::status::ok, req.version()};
    res.set(http::field::content_type, "text/plain");
    res.set("X-Request-Id", id);
    if (req.target() == "/hello") {
      res.body() = "hello, " + id + "\n";
    } else {
      res.result(http::status::not_found);
      res.body() = "not found\n";
    }
    res.keep_alive(req.keep_alive());
    res.prepare_payload();
    boost::system::error_code ec2;
    http::async_write(s, res, asio::redirect_error(weft::use_fiber, ec2));
    if (ec2 || !res.keep_alive()) break;
  }
  boost::system::error_code ignored;
  s.shutdown(tcp::socket::shutdown_both, ignored);
}

}  // namespace

int main(int argc, char** argv) {
  unsigned short port = 8080;
  unsigned threads = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--port") port = static_cast<unsigned short>(std::atoi(argv[i + 1]));
    if (a == "--threads") threads = unsigned(std::max(1, std::atoi(argv[i + 1])));
  }
  weft::executor ex(threads);
  auto& io = weft::io_context(ex);
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::address_v4::loopback(), port));
  std::printf("listening on port %u\n", unsigned(acceptor.local_endpoint().port()));
  std::fflush(stdout);
  ex.run([&] {
    weft::task_group connections;
    asio::signal_set signals(io, SIGINT, SIGTERM);
    connections.spawn([&] {
      boost::system::error_code ec;
      signals.async_wait(asio::redirect_error(weft::use_fiber, ec));
      // Stop accepting and end every connection (the coroutine twin stops its io_context):
      // the accept fails once the acceptor is closed, and the cancelled group cancels every
      // session's pending read.
      asio::post(io, [&] { acceptor.close(); });
      connections.cancel();
    });
    for (;;) {
      boost::system::error_code ec;
      tcp::socket s = acceptor.async_accept(asio::redirect_error(weft::use_fiber, ec));
      if (ec) break;
      connections.spawn(session, std::move(s));
    }
  });
  return 0;
}
