// http_coro: the /hello endpoint of examples/http_service written with Asio C++20 coroutines
// (co_spawn/awaitable), the explicit-await style, as the baseline of the HTTP benchmark.
// Same parsing (Beast), same request id handling (X-Request-Id or generated), no logging --
// run the weft service with --quiet beside it.
//
// usage: http_coro [--port N] [--threads N]   prints "listening on port N"; SIGINT/SIGTERM stop
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace asio = boost::asio;
namespace http = boost::beast::http;
using asio::ip::tcp;

namespace {

std::string next_request_id() {
  static std::atomic<unsigned long> counter{0};
  static const unsigned long start = static_cast<unsigned long>(::getpid()) << 20;
  return "gen-" + std::to_string(start + ++counter);
}

asio::awaitable<void> session(tcp::socket s) {
  boost::beast::flat_buffer buffer;
  for (;;) {
    http::request<http::string_body> req;
    auto [ec, n] = co_await http::async_read(s, buffer, req, asio::as_tuple(asio::use_awaitable));
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
    auto [ec2, m] = co_await http::async_write(s, res, asio::as_tuple(asio::use_awaitable));
    if (ec2 || !res.keep_alive()) break;
    (void)n;
    (void)m;
  }
  boost::system::error_code ignored;
  s.shutdown(tcp::socket::shutdown_both, ignored);
}

asio::awaitable<void> listen(tcp::acceptor& acceptor) {
  for (;;) {
    auto [ec, s] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
    asio::co_spawn(acceptor.get_executor(), session(std::move(s)), asio::detached);
  }
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
  asio::io_context io{int(threads)};
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::address_v4::loopback(), port));
  std::printf("listening on port %u\n", unsigned(acceptor.local_endpoint().port()));
  std::fflush(stdout);
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code, int) { io.stop(); });
  asio::co_spawn(io, listen(acceptor), asio::detached);
  std::vector<std::thread> runners;
  for (unsigned i = 1; i < threads; ++i)
    runners.emplace_back([&] { io.run(); });
  io.run();
  for (auto& t : runners)
    t.join();
  return 0;
}
