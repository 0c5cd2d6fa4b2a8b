// echo: a TCP echo server over loopback, written three ways, under one load generator.
//
// usage: echo <weft|coro|threads> [connections=100] [seconds=3] [threads=2] [bytes=64]
//             [asio|epoll]
//   weft     one fiber per connection on a weft::executor, I/O with weft::use_fiber
//   coro     Asio C++20 coroutines (co_spawn/awaitable), the io_context run by `threads` threads
//   threads  one blocking thread per connection
// The server runs in this process; the load generator runs in a forked child, one thread,
// `connections` connections each sending a message and waiting for its echo, back to back,
// for `seconds`. Two load generators, as two clients may judge two servers differently:
//   asio     Asio callbacks (async_write, then async_read of the whole echo)
//   epoll    raw non-blocking sockets and epoll_wait, every message different and every
//            echoed byte checked
// prints: echo <kind> <threads> <connections> <requests/s> <p50 us> <p99 us> <p90 us>
// <p99.9 us> <client>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <weft/asio.hpp>
#include <weft/weft.hpp>

namespace asio = boost::asio;
using asio::ip::tcp;
using clock_type = std::chrono::steady_clock;

namespace {

std::size_t message_bytes = 64;

// ---- the load generator ---------------------------------------------------------------

struct client_conn {
  tcp::socket socket;
  std::vector<char> out, in;
  clock_type::time_point sent;
  explicit client_conn(asio::io_context& io)
      : socket(io), out(message_bytes, 'x'), in(message_bytes) {}
};

// report() writes requests/s and the latency quantiles to `fd` (the parent reads them).
void report(std::vector<float>& latencies_us, double per_second, int fd) {
  std::sort(latencies_us.begin(), latencies_us.end());
  auto at_q = [&](double q) {
    return latencies_us.empty()
               ? 0.0
               : double(latencies_us[std::size_t(q * double(latencies_us.size() - 1))]);
  };
  double result[5] = {per_second, at_q(0.5), at_q(0.99), at_q(0.9), at_q(0.999)};
  if (write(fd, result, sizeof result) != sizeof result) std::_Exit(1);
}

// run_client() drives the server at `port` and writes requests/s, p50, p99 to `fd`.
void run_client(unsigned short port, int connections, double seconds, int fd) {
  asio::io_context io(1);
  const tcp::endpoint at(asio::ip::address_v4::loopback(), port);
  std::vector<std::unique_ptr<client_conn>> conns;
  std::vector<float> latencies_us;
  latencies_us.reserve(4 << 20);
  const auto start = clock_type::now();
  const auto stop_at = start + std::chrono::duration_cast<clock_type::duration>(
                                   std::chrono::duration<double>(seconds));
  long done = 0;
  std::function<void(client_conn&)> round = [&](client_conn& c) {
    c.sent = clock_type::now();
    asio::async_write(
        c.socket, asio::buffer(c.out), [&](boost::system::error_code ec, std::size_t) {
          if (ec) return;
          asio::async_read(c.socket, asio::buffer(c.in),
                           [&](boost::system::error_code ec2, std::size_t) {
                             if (ec2) return;
                             const auto now = clock_type::now();
                             latencies_us.push_back(
                                 std::chrono::duration<float, std::micro>(now - c.sent).count());
                             ++done;
                             if (now < stop_at) {
                               round(c);
                             } else {
                               c.socket.close();
                             }
                           });
        });
  };
  for (int i = 0; i < connections; ++i) {
    conns.push_back(std::make_unique<client_conn>(io));
    conns.back()->socket.connect(at);
    conns.back()->socket.set_option(tcp::no_delay(true));
  }
  for (auto& c : conns)
    round(*c);
  io.run();
  const double elapsed = std::chrono::duration<double>(clock_type::now() - start).count();
  report(latencies_us, double(done) / elapsed, fd);
}

// run_epoll_client() is the same load with no Asio: each connection's message carries its
// number and round, so a byte echoed wrong, lost or mixed up between connections fails the run.
void run_epoll_client(unsigned short port, int connections, double seconds, int fd) {
  struct conn {
    int fd = -1;
    std::vector<unsigned char> out, in;
    std::size_t written = 0, got = 0;
    unsigned round = 0;
    clock_type::time_point sent;
  };
  const int ep = epoll_create1(0);
  std::vector<conn> conns(static_cast<std::size_t>(connections));
  auto fill = [](conn& c, std::size_t index) {
    for (std::size_t i = 0; i < c.out.size(); ++i)
      c.out[i] = static_cast<unsigned char>(index * 131 + c.round * 7 + i);
  };
  auto fail = [](const char* what) {
    std::fprintf(stderr, "echo: epoll client: %s (errno %d)\n", what, errno);
    std::_Exit(1);
  };
  sockaddr_in at{};
  at.sin_family = AF_INET;
  at.sin_port = htons(port);
  at.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (std::size_t i = 0; i < conns.size(); ++i) {
    conn& c = conns[i];
    c.fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (c.fd < 0 || ::connect(c.fd, reinterpret_cast<sockaddr*>(&at), sizeof at) != 0)
      fail("connect");
    const int one = 1;
    ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ::fcntl(c.fd, F_SETFL, ::fcntl(c.fd, F_GETFL) | O_NONBLOCK);
    c.out.resize(message_bytes);
    c.in.resize(message_bytes);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev) != 0) fail("epoll_ctl");
  }
  std::vector<float> latencies_us;
  latencies_us.reserve(4 << 20);
  long done = 0;
  const auto start = clock_type::now();
  const auto stop_at = start + std::chrono::duration_cast<clock_type::duration>(
                                   std::chrono::duration<double>(seconds));
  // send() writes what the kernel takes; a message it does not take whole waits for EPOLLOUT.
  auto send = [&](conn& c, std::size_t index) {
    while (c.written < c.out.size()) {
      const ssize_t n = ::write(c.fd, c.out.data() + c.written, c.out.size() - c.written);
      if (n < 0 && errno == EAGAIN) break;
      if (n <= 0) fail("write");
      c.written += static_cast<std::size_t>(n);
    }
    epoll_event ev{};
    ev.events = EPOLLIN | (c.written < c.out.size() ? EPOLLOUT : 0u);
    ev.data.u64 = index;
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev) != 0) fail("epoll_ctl");
  };
  auto start_round = [&](conn& c, std::size_t index) {
    fill(c, index);
    c.written = c.got = 0;
    c.sent = clock_type::now();
    send(c, index);
  };
  for (std::size_t i = 0; i < conns.size(); ++i)
    start_round(conns[i], i);
  std::size_t open = conns.size();
  std::array<epoll_event, 128> events;
  while (open != 0) {
    const int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), 1000);
    if (n < 0 && errno != EINTR) fail("epoll_wait");
    for (int e = 0; e < n; ++e) {
      const std::size_t index = events[std::size_t(e)].data.u64;
      conn& c = conns[index];
      if (c.fd < 0) continue;
      if ((events[std::size_t(e)].events & EPOLLOUT) != 0) send(c, index);
      if ((events[std::size_t(e)].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) == 0) continue;
      for (;;) {
        const ssize_t r = ::read(c.fd, c.in.data() + c.got, c.in.size() - c.got);
        if (r < 0 && errno == EAGAIN) break;
        if (r <= 0) fail("read: the server closed the connection");
        c.got += static_cast<std::size_t>(r);
        if (c.got == c.in.size()) break;
      }
      if (c.got < c.in.size()) continue;
      if (c.in != c.out) fail("an echo differs from what was sent");
      const auto now = clock_type::now();
      latencies_us.push_back(std::chrono::duration<float, std::micro>(now - c.sent).count());
      ++done;
      ++c.round;
      if (now < stop_at) {
        start_round(c, index);
      } else {
        ::close(c.fd);
        c.fd = -1;
        --open;
      }
    }
  }
  const double elapsed = std::chrono::duration<double>(clock_type::now() - start).count();
  ::close(ep);
  report(latencies_us, double(done) / elapsed, fd);
}

// ---- the three servers ----------------------------------------------------------------

// Each server accepts `connections` connections and serves each until its peer closes.

void weft_server(tcp::acceptor& listener, int connections, unsigned threads) {
  weft::executor ex(threads);
  ex.run([&] {
    tcp::acceptor acceptor(weft::io_context(ex), tcp::v4(), listener.release());
    weft::task_group conns;
    for (int i = 0; i < connections; ++i) {
      conns.spawn(
          [](tcp::socket s) {
            s.set_option(tcp::no_delay(true));
            std::vector<char> buf(message_bytes);
            boost::system::error_code ec;
            for (;;) {
              asio::async_read(s, asio::buffer(buf), asio::redirect_error(weft::use_fiber, ec));
              if (ec) return;
              asio::async_write(s, asio::buffer(buf), asio::redirect_error(weft::use_fiber, ec));
              if (ec) return;
            }
          },
          acceptor.async_accept(weft::use_fiber));
    }
  });
}

asio::awaitable<void> coro_session(tcp::socket s) {
  s.set_option(tcp::no_delay(true));
  std::vector<char> buf(message_bytes);
  for (;;) {
    auto [ec, n] =
        co_await asio::async_read(s, asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
    auto [ec2, m] =
        co_await asio::async_write(s, asio::buffer(buf, n), asio::as_tuple(asio::use_awaitable));
    if (ec2) co_return;
    (void)m;
  }
}

asio::awaitable<void> coro_accept(tcp::acceptor& acceptor, int connections) {
  for (int i = 0; i < connections; ++i) {
    tcp::socket s = co_await acceptor.async_accept(asio::use_awaitable);
    asio::co_spawn(acceptor.get_executor(), coro_session(std::move(s)), asio::detached);
  }
}

void coro_server(tcp::acceptor& listener, int connections, unsigned threads) {
  asio::io_context io{int(threads)};
  tcp::acceptor acceptor(io, tcp::v4(), listener.release());
  asio::co_spawn(io, coro_accept(acceptor, connections), asio::detached);
  std::vector<std::thread> runners;
  for (unsigned i = 1; i < threads; ++i)
    runners.emplace_back([&] { io.run(); });
  io.run();
  for (auto& t : runners)
    t.join();
}

void threads_server(tcp::acceptor& listener, int connections) {
  std::vector<std::thread> conns;
  for (int i = 0; i < connections; ++i) {
    tcp::socket s = listener.accept();
    conns.emplace_back(
        [](tcp::socket c) {
          c.set_option(tcp::no_delay(true));
          std::vector<char> buf(message_bytes);
          boost::system::error_code ec;
          for (;;) {
            asio::read(c, asio::buffer(buf), ec);
            if (ec) return;
            asio::write(c, asio::buffer(buf), ec);
            if (ec) return;
          }
        },
        std::move(s));
  }
  for (auto& t : conns)
    t.join();
}

}  // namespace

int main(int argc, char** argv) {
  const std::string kind = argc > 1 ? argv[1] : "weft";
  const int connections = argc > 2 ? std::atoi(argv[2]) : 100;
  const double seconds = argc > 3 ? std::atof(argv[3]) : 3.0;
  const unsigned threads = argc > 4 ? unsigned(std::atoi(argv[4])) : 2;
  if (argc > 5) message_bytes = std::size_t(std::atol(argv[5]));
  const std::string client = argc > 6 ? argv[6] : "asio";
  if ((kind != "weft" && kind != "coro" && kind != "threads") ||
      (client != "asio" && client != "epoll")) {
    std::fprintf(stderr,
                 "usage: echo <weft|coro|threads> [connections] [seconds] [threads] [bytes] "
                 "[asio|epoll]\n");
    return 2;
  }
  asio::io_context setup;
  tcp::acceptor listener(setup, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  listener.listen(1024);
  const unsigned short port = listener.local_endpoint().port();
  int fds[2];
  if (pipe(fds) != 0) return 1;
  const pid_t child = fork();
  if (child == 0) {
    close(fds[0]);
    listener.close();
    if (client == "epoll") {
      run_epoll_client(port, connections, seconds, fds[1]);
    } else {
      run_client(port, connections, seconds, fds[1]);
    }
    std::_Exit(0);
  }
  close(fds[1]);
  if (kind == "weft") {
    weft_server(listener, connections, threads);
  } else if (kind == "coro") {
    coro_server(listener, connections, threads);
  } else {
    threads_server(listener, connections);
  }
  double result[5] = {0, 0, 0, 0, 0};
  const bool got = read(fds[0], result, sizeof result) == sizeof result;
  int status = 0;
  waitpid(child, &status, 0);
  if (!got) {
    std::fprintf(stderr, "echo: the load generator failed\n");
    return 1;
  }
  std::printf("echo %s %u %d %.0f %.1f %.1f %.1f %.1f %s\n", kind.c_str(), threads, connections,
              result[0], result[1], result[2], result[3], result[4], client.c_str());
  return 0;
}
