// Model-based randomized tests of weft::channel and select: random operations checked against
// a sequential model (a bounded FIFO), first one at a time, then from many fibers and plain
// threads at once with cancellation and deadlines, where the model's invariants must hold:
// every value reported sent is received exactly once, no value reported not sent is ever
// received, and each receiver sees each sender's values in the order they were sent.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include <weft/weft.hpp>

using namespace std::chrono_literals;
using weft::errc;

namespace {

// model is the sequential meaning of a channel of capacity cap.
struct model {
  std::size_t cap;
  std::deque<int> buffer;
  bool closed = false;

  bool try_send(int v) {
    if (closed || buffer.size() >= cap) return false;
    buffer.push_back(v);
    return true;
  }
  std::optional<int> try_recv() {
    if (buffer.empty()) return std::nullopt;
    const int v = buffer.front();
    buffer.pop_front();
    return v;
  }
};

}  // namespace

TEST_CASE("channel operations one at a time behave exactly like a bounded FIFO",
          "[channel][model]") {
  const std::uint32_t seed = GENERATE(1u, 2u, 3u, 4u, 5u, 6u, 7u, 8u);
  const std::size_t cap = GENERATE(0u, 1u, 3u, 64u);
  CAPTURE(seed, cap);
  std::mt19937 rng(seed);
  weft::channel<int> ch(cap, "model");
  model m{cap, {}, false};
  int next = 0;
  for (int step = 0; step < 3000; ++step) {
    const unsigned op = rng() % 100;
    if (op < 40) {
      const int v = next++;
      REQUIRE(ch.try_send(v) == m.try_send(v));
    } else if (op < 80) {
      REQUIRE(ch.try_recv() == m.try_recv());
    } else if (op < 88) {
      std::optional<int> out;
      const int v = next++;
      // A select of a send and a receive: which one may take effect is decided by the model.
      const bool can_send = !m.closed && m.buffer.size() < cap;
      const bool can_recv = !m.buffer.empty() || m.closed;
      std::optional<std::size_t> k;
      if (m.closed) {
        // A send_case on a closed channel is ready; if chosen the select throws.
        try {
          k = weft::try_select(weft::send_case(ch, v), weft::recv_case(ch, out));
        } catch (const weft::error& e) {
          REQUIRE(e.code() == errc::channel_closed);
          continue;
        }
      } else {
        k = weft::try_select(weft::send_case(ch, v), weft::recv_case(ch, out));
      }
      REQUIRE(k.has_value() == (can_send || can_recv));
      if (k == 0u) {
        REQUIRE(can_send);
        m.try_send(v);
      } else if (k == 1u) {
        REQUIRE(can_recv);
        REQUIRE(out == m.try_recv());
      }
    } else if (op < 89 && step > 2000) {
      ch.close();
      m.closed = true;
    } else {
      REQUIRE(ch.size() == m.buffer.size());
      REQUIRE(ch.closed() == m.closed);
    }
  }
  // Drain: what the model holds, then nullopt once closed.
  while (std::optional<int> v = m.try_recv())
    REQUIRE(ch.try_recv() == v);
  REQUIRE_FALSE(ch.try_recv().has_value());
  ch.close();
  REQUIRE_FALSE(ch.recv().has_value());
}

namespace {

// A value carries its sender, the channel it was sent on (a stream: sender * 2 + channel) and
// that sender's sequence number. FIFO order holds per stream.
int encode(int sender, int seq) {
  return sender * 1'000'000 + seq;
}
int stream_of(int v) {
  return v / 1'000'000;
}
int seq_of(int v) {
  return v % 1'000'000;
}

// ledger records, per actor, what it sent and what it received (each actor writes its own).
struct ledger {
  std::vector<int> sent;      // values whose send took effect
  std::vector<int> not_sent;  // values whose send reported failure
  std::vector<int> received;  // in the order received
};

// act() is one actor's random life: sends, receives, selects over two channels, some of them
// under short deadlines, until `ops` operations are done or the channels are closed.
void act(int id, std::uint32_t seed, int ops, weft::channel<int>& a, weft::channel<int>& b,
         ledger& out) {
  std::mt19937 rng(seed);
  int seq = 0;
  auto deadline = [&] { return std::chrono::microseconds(rng() % 200); };
  for (int i = 0; i < ops; ++i) {
    const unsigned op = rng() % 7;
    weft::channel<int>& ch = rng() % 2 == 0 ? a : b;
    const int v = encode(id * 2 + (op == 4 || &ch == &b ? (op == 4 ? 0 : 1) : 0), seq);
    try {
      switch (op) {
        case 0:  // blocking send under a deadline
          ++seq;
          weft::with_timeout(deadline(), [&] { ch.send(v); });
          out.sent.push_back(v);
          break;
        case 1:
          ++seq;
          if (ch.try_send(v)) {
            out.sent.push_back(v);
          } else {
            out.not_sent.push_back(v);
          }
          break;
        case 2:  // blocking recv under a deadline
          if (auto r = weft::with_timeout(deadline(), [&] { return ch.recv(); })) {
            out.received.push_back(*r);
          }
          break;
        case 3:
          if (auto r = ch.try_recv()) out.received.push_back(*r);
          break;
        case 4: {  // select: send on one, receive on the other
          ++seq;
          std::optional<int> r;
          const std::size_t k = weft::with_timeout(deadline(), [&] {
            return weft::select(weft::send_case(a, v), weft::recv_case(b, r));
          });
          if (k == 0) {
            out.sent.push_back(v);
          } else {
            out.not_sent.push_back(v);
            if (r) out.received.push_back(*r);
          }
          break;
        }
        case 5: {  // select over both receives
          std::optional<int> r;
          weft::with_timeout(deadline(), [&] {
            return weft::select(weft::recv_case(a, r), weft::recv_case(b, r));
          });
          if (r) out.received.push_back(*r);
          break;
        }
        default:
          weft::this_fiber::yield();
          break;
      }
    } catch (const weft::error& e) {
      // A send that threw (deadline, or closed) delivered nothing.
      if (op == 0 || op == 4) out.not_sent.push_back(v);
      if (e.code() != errc::deadline_exceeded && e.code() != errc::channel_closed) throw;
    }
  }
}

}  // namespace

TEST_CASE("channels under concurrent random use keep every value exactly once and in order",
          "[channel][model]") {
  const unsigned threads = GENERATE(1u, 2u, 4u);
  const std::uint32_t seed = GENERATE(11u, 12u, 13u);
  const std::size_t cap = GENERATE(0u, 2u);
  CAPTURE(threads, seed, cap);
  weft::executor ex(threads);
  weft::channel<int> a(cap, "a"), b(cap == 0 ? 0 : cap + 3, "b");
  constexpr int kFibers = 24;
  constexpr int kThreads = 2;  // plain threads take part too
  constexpr int kOps = 300;
  std::vector<ledger> books(kFibers + kThreads);
  std::vector<weft::task<void>> fibers;
  for (int id = 0; id < kFibers; ++id) {
    fibers.push_back(ex.spawn(
        [&, id] { act(id, seed * 100 + std::uint32_t(id), kOps, a, b, books[std::size_t(id)]); }));
  }
  std::vector<std::thread> plain;
  for (int t = 0; t < kThreads; ++t) {
    const int id = kFibers + t;
    plain.emplace_back([&, id] {
      act(id, seed * 100 + std::uint32_t(id), kOps / 3, a, b, books[std::size_t(id)]);
    });
  }
  for (auto& f : fibers)
    f.get();
  for (auto& t : plain)
    t.join();
  // Close, then drain what is left.
  a.close();
  b.close();
  std::vector<int> drained;
  for (weft::channel<int>* ch : {&a, &b}) {
    while (std::optional<int> v = ch->recv())
      drained.push_back(*v);
  }

  std::map<int, int> times_received;
  for (const ledger& l : books) {
    for (int v : l.received)
      ++times_received[v];
    // Each receiver sees each stream's values in increasing order.
    std::map<int, int> last_seq;
    for (int v : l.received) {
      auto [it, fresh] = last_seq.emplace(stream_of(v), seq_of(v));
      if (!fresh) {
        REQUIRE(seq_of(v) > it->second);
        it->second = seq_of(v);
      }
    }
  }
  for (int v : drained)
    ++times_received[v];
  std::size_t sent = 0;
  for (const ledger& l : books) {
    sent += l.sent.size();
    for (int v : l.sent)
      REQUIRE(times_received[v] == 1);
    for (int v : l.not_sent)
      REQUIRE(times_received.count(v) == 0);
  }
  std::size_t received = 0;
  for (const auto& [v, n] : times_received)
    received += static_cast<std::size_t>(n);
  REQUIRE(received == sent);
}
