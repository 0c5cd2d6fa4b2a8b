// introspection.cpp: executor::fibers() and executor::dump() -- every live fiber of a running
// pool with its context, without stopping the pool.
//
// There is no registry to keep up to date on spawn: every fiber's stack comes from the
// executor's stack pool, which keeps each stack mapped until the executor goes, and the top
// of each stack holds a fiber_slot saying whether a fiber uses it (its state) and which one
// (its identity). A listing walks the stacks.
//
// The state and the identity are plain words; the context is not: a running fiber edits its
// own snapshot in place while nobody shares it. So a listing copies a fiber's context only
// while the fiber cannot run: it pins the fiber (a worker does not resume a pinned fiber),
// checks that the fiber is not running, takes a reference to its snapshot -- which makes the
// fiber copy rather than edit the snapshot from then on -- and unpins it. Printing the values
// happens afterwards, from the reference. The pin and the worker's "running" mark form a
// Dekker handshake with the heavy fence on the listing's side (asymmetric_fence.hpp).
#include <algorithm>
#include <cstdio>
#include <ostream>
#include <thread>
#include <unordered_map>

#include <weft/fiber_local.hpp>

#include "context/var_registry.hpp"
#include "sched/cancel_scope.hpp"
#include "sched/pool.hpp"

namespace weft {

std::string_view to_string(fiber_state s) noexcept {
  switch (s) {
    case fiber_state::running:
      return "running";
    case fiber_state::ready:
      return "ready";
    case fiber_state::suspended:
      return "suspended";
  }
  return "unknown";
}

namespace detail {
namespace {

// A listing waits this many rounds, this long each, for fibers it saw running on another
// worker to stop, before it lists them without their context.
constexpr int kRunningRetries = 20;
constexpr auto kRunningPause = std::chrono::microseconds(100);

// seen is what a listing took from one fiber while it was pinned.
struct seen {
  fiber_slot* slot;
  fiber_slot::identity who;
  weft::fiber_state state;
  node* root = nullptr;  // retained
  bool known = false;
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  bool cancelled = false;
  std::string waiting_on{};
};

weft::fiber_state public_state(fiber_slot::state_t s) noexcept {
  switch (s) {
    case fiber_slot::ready:
      return weft::fiber_state::ready;
    case fiber_slot::suspended:
      return weft::fiber_state::suspended;
    default:
      return weft::fiber_state::running;
  }
}

// read() takes what a listing shows of a fiber that cannot change it now: a reference to
// the snapshot it sees, and its cancellation scope's deadline and state (the scope cannot go
// while the fiber holds it).
void read(const fiber_state& f, seen& into) noexcept {
  into.root = f.current->root;
  if (into.root != nullptr) retain(into.root);
  into.deadline = deadline_of(f.scope);
  into.cancelled = is_cancelled(f.scope);
  into.known = true;
}

}  // namespace

void pool::wait_unpinned(const fiber_slot& slot) const noexcept {
  for (unsigned spins = 0;; ++spins) {
    const unsigned n = pinning_.load(std::memory_order_acquire);
    bool pinned = false;
    for (unsigned i = 0; i < n && !pinned; ++i) {
      pinned = pins_[i].load(std::memory_order_acquire) == &slot;
    }
    if (!pinned) return;
    if (spins < 1024) {
      spin_pause();
    } else {
      std::this_thread::yield();  // the listing's thread may have been preempted
    }
  }
}

namespace {
// printing_listing is set while the calling fiber (or thread) prints the values of a listing:
// a listing started from a value's operator<< would print that value again, and so on
// without end. It is refused instead (see fibers()).
fiber_local<bool> printing_listing;

struct printing_mark {
  bool& flag;
  explicit printing_mark(bool& f) noexcept : flag(f) { flag = true; }
  ~printing_mark() { flag = false; }
  printing_mark(const printing_mark&) = delete;
  printing_mark& operator=(const printing_mark&) = delete;
};
}  // namespace

std::vector<fiber_info> pool::fibers() const {
  bool& printing = printing_listing.get();
  if (printing) {
    throw error(errc::would_deadlock,
                "weft: executor::fibers()/dump() called from a context value's operator<< "
                "while it is printed for a listing: the new listing would print it again, "
                "without end");
  }
  std::vector<seen> found;
  // Pinning and reading: one listing at a time. This part runs no user code and never
  // suspends; a fiber that waits for it suspends (inspect_mutex_ is a weft::mutex), so no
  // worker thread is blocked behind a listing, and printing below holds no lock.
  {
    std::lock_guard<weft::mutex> one_listing(inspect_mutex_);
    const fiber_record* self = current_record();
    const fiber_slot* self_slot = self != nullptr && &self->owner == this ? &self->slot : nullptr;

    // Every stack that has a fiber now; later ones are not listed.
    std::vector<fiber_slot*> pending;
    stacks.for_each_top([&](char* top) {
      auto* s = reinterpret_cast<fiber_slot*>(top - sizeof(fiber_slot));
      if (s->get_state() != fiber_slot::free) pending.push_back(s);
    });

    found.reserve(pending.size());
    std::unordered_map<const fiber_slot*, std::uint64_t> running;  // slot -> id seen running
    for (int round = 0; !pending.empty(); ++round) {
      if (round > 0) std::this_thread::sleep_for(kRunningPause);
      std::vector<fiber_slot*> still_running;
      for (std::size_t at = 0; at < pending.size(); at += kPins) {
        const unsigned n = static_cast<unsigned>(std::min<std::size_t>(kPins, pending.size() - at));
        // Release: what this listing did before (the retain() of an earlier batch's snapshots)
        // happens-before a worker that sees the pin and then the fiber's refs == 1 in bind().
        for (unsigned i = 0; i < n; ++i)
          pins_[i].store(pending[at + i], std::memory_order_release);
        pinning_.store(n, std::memory_order_release);
        const bool handshake = asymmetric_fence::heavy();
        for (unsigned i = 0; i < n; ++i) {
          fiber_slot* s = pending[at + i];
          seen f{s, {}, weft::fiber_state::running};
          const fiber_slot::state_t state = s->get_state();
          // A slot whose identity is being rewritten gets its fiber only now: not listed.
          if (state != fiber_slot::free && s->read(f.who)) {
            auto earlier = running.find(s);
            if (earlier != running.end() && earlier->second != f.who.id) {
              // The fiber seen running ended meanwhile; another one took its stack.
            } else if (s == self_slot) {
              read(*self, f);
              found.push_back(f);
            } else if (state == fiber_slot::running || !handshake) {
              running.emplace(s, f.who.id);
              still_running.push_back(s);
            } else {
              // Pinned and not running: nothing changes the fiber's context now.
              f.state = public_state(state);
              const fiber_record& r = *record_below(s);
              read(r, f);
              // The label and the object it names live while the fiber waits; it cannot
              // stop waiting while pinned.
              if (state == fiber_slot::suspended && r.waiting_on != nullptr) {
                try {
                  f.waiting_on = describe(*r.waiting_on);
                } catch (...) {  // out of memory: listed without it, the pins must go
                }
              }
              found.push_back(std::move(f));
            }
          }
          pins_[i].store(nullptr, std::memory_order_release);
        }
        pinning_.store(0, std::memory_order_release);
      }
      pending.swap(still_running);
      if (round + 1 == kRunningRetries) {
        // Still running after all this time (a fiber that computes without a pause): listed
        // without its context, from the identity read when it was last seen.
        for (fiber_slot* s : pending) {
          seen f{s, {}, weft::fiber_state::running};
          if (s->read(f.who) && f.who.id == running[s]) found.push_back(f);
        }
        break;
      }
    }
  }

  // Outside the lock and the pins: values are printed (user code, which may suspend the
  // calling fiber) and the references dropped.
  const printing_mark mark(printing);
  const std::int64_t now = coarse_now();
  std::vector<fiber_info> result;
  result.reserve(found.size());
  std::exception_ptr failure;
  for (seen& f : found) {
    fiber_info info;
    info.id = f.who.id;
    info.parent = f.who.parent;
    info.state = f.state;
    info.age = std::chrono::nanoseconds(std::max<std::int64_t>(0, now - f.who.born));
    info.context_known = f.known;
    info.deadline = f.deadline;
    info.cancelled = f.cancelled;
    info.waiting_on = std::move(f.waiting_on);
    if (!failure) {
      try {
        info.context = describe(f.root);
        result.push_back(std::move(info));
      } catch (...) {
        failure = std::current_exception();  // out of memory: drop the rest, then rethrow
      }
    }
    release(f.root);
  }
  if (failure) std::rethrow_exception(failure);
  std::sort(result.begin(), result.end(),
            [](const fiber_info& a, const fiber_info& b) { return a.id < b.id; });
  return result;
}

}  // namespace detail

namespace {

// write_age() prints d the way a person reads it: "850ms", "12.4s", "3m05s", "2h07m".
void write_age(std::ostream& out, std::chrono::steady_clock::duration d) {
  using namespace std::chrono;
  const auto ms = duration_cast<milliseconds>(d).count();
  char text[32];
  if (ms < 1000) {
    std::snprintf(text, sizeof text, "%lldms", static_cast<long long>(ms));
  } else if (ms < 60'000) {
    std::snprintf(text, sizeof text, "%.1fs", static_cast<double>(ms) / 1000.0);
  } else if (ms < 3'600'000) {
    std::snprintf(text, sizeof text, "%lldm%02llds", static_cast<long long>(ms / 60'000),
                  static_cast<long long>(ms / 1000 % 60));
  } else {
    std::snprintf(text, sizeof text, "%lldh%02lldm", static_cast<long long>(ms / 3'600'000),
                  static_cast<long long>(ms / 60'000 % 60));
  }
  out << text;
}

// write_value() prints v as is when it reads as one word, else quoted with escapes.
void write_value(std::ostream& out, const std::string& v) {
  const bool plain = !v.empty() && std::none_of(v.begin(), v.end(), [](char c) {
    return c == ' ' || c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20;
  });
  if (plain) {
    out << v;
    return;
  }
  out << '"';
  for (char c : v) {
    if (c == '"' || c == '\\') {
      out << '\\' << c;
    } else if (c == '\n') {
      out << "\\n";
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x",
                    static_cast<unsigned>(static_cast<unsigned char>(c)));
      out << hex;
    } else {
      out << c;
    }
  }
  out << '"';
}

void write_fiber(std::ostream& out, const fiber_info& f, std::size_t depth, bool orphan,
                 std::chrono::steady_clock::time_point now) {
  constexpr std::size_t kMaxIndent = 16;  // deeper trees stay readable
  out << std::string(2 * std::min(depth, kMaxIndent), ' ') << "fiber " << f.id;
  if (orphan) out << " (parent " << f.parent << ", ended)";
  out << ' ' << to_string(f.state);
  if (!f.waiting_on.empty()) out << " (" << f.waiting_on << ')';
  out << ' ';
  write_age(out, f.age);
  if (!f.context_known) {
    out << " <context not read: running>";
  } else {
    if (f.deadline == std::chrono::steady_clock::time_point::max()) {
      // no deadline
    } else if (f.deadline > now) {
      out << " deadline in ";
      write_age(out, f.deadline - now);
    } else {
      out << " deadline passed ";
      write_age(out, now - f.deadline);
      out << " ago";
    }
    if (f.cancelled && f.deadline > now) out << " cancelled";
  }
  for (const auto& [name, value] : f.context) {
    out << ' ' << name << '=';
    write_value(out, value);
  }
  out << '\n';
}

}  // namespace

void executor::dump(std::ostream& out) const {
  const std::vector<fiber_info> all = fibers();
  const executor_stats st = stats();
  const auto now = std::chrono::steady_clock::now();
  std::size_t count[3] = {};
  for (const fiber_info& f : all)
    ++count[static_cast<int>(f.state)];
  out << "weft executor '" << name() << "': " << st.threads << " threads, " << all.size()
      << " fibers (" << count[0] << " running, " << count[1] << " ready, " << count[2]
      << " suspended), " << st.spawned << " spawned, " << st.steals << " steals\n";

  // Each fiber under its parent, depth first, siblings by id; without recursion (the caller
  // may be a fiber with a small stack, and spawn trees can be deep).
  std::unordered_map<std::uint64_t, std::size_t> index;
  index.reserve(all.size());
  for (std::size_t i = 0; i < all.size(); ++i)
    index.emplace(all[i].id, i);
  std::vector<std::vector<std::size_t>> children(all.size());
  std::vector<std::size_t> roots;
  for (std::size_t i = 0; i < all.size(); ++i) {
    auto p = all[i].parent != 0 ? index.find(all[i].parent) : index.end();
    if (p != index.end()) {
      children[p->second].push_back(i);
    } else {
      roots.push_back(i);
    }
  }
  std::vector<std::pair<std::size_t, std::size_t>> todo;  // (fiber, depth)
  for (auto r = roots.rbegin(); r != roots.rend(); ++r)
    todo.emplace_back(*r, 0);
  while (!todo.empty()) {
    const auto [i, depth] = todo.back();
    todo.pop_back();
    write_fiber(out, all[i], depth, depth == 0 && all[i].parent != 0, now);
    for (auto c = children[i].rbegin(); c != children[i].rend(); ++c)
      todo.emplace_back(*c, depth + 1);
  }
}

}  // namespace weft
