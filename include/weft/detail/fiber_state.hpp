// weft/detail/fiber_state.hpp: what weft keeps per fiber (and per plain thread), and the
// thread-local pointers through which get() finds it.
//
// The scheduler points tl_fiber / tl_context at the record of the fiber it is about to resume,
// on every switch, so a fiber that migrates between worker threads always reads its own
// record. The pointers are constinit (no TLS wrapper call) and use the initial-exec model: the
// reads are %fs-relative loads that the compiler re-does after every call, so a value read
// after a suspension is never the old thread's.
#pragma once

#include <cstdint>
#include <exception>

#include <weft/detail/snapshot.hpp>

#define WEFT_TLS_MODEL __attribute__((tls_model("initial-exec")))

namespace weft::detail {

struct cancel_scope;

// context_state is one "current context": the snapshot plus the identity tokens check.
struct context_state {
  node* root = nullptr;
  std::uint64_t id = 0;  // assigned when the first token is made here; 0 = none yet
};

// local_entry is one fiber_local value of one fiber.
struct local_entry {
  void* object = nullptr;
  void (*destroy)(void*) noexcept = nullptr;
};

// fiber_state is the record of one fiber, or of one plain thread outside fibers.
struct fiber_state {
  context_state own;              // the fiber's own context
  context_state* current = &own;  // own, or the context object being run (context::run)
  local_entry* locals = nullptr;  // fiber_local values, indexed by fiber_local index
  std::uint32_t locals_size = 0;
  bool is_pool_fiber = false;     // a weft fiber (it can park) rather than a plain thread
  cancel_scope* scope = nullptr;  // inherited cancellation, nullptr = never cancelled

  fiber_state() = default;
  fiber_state(const fiber_state&) = delete;
  fiber_state& operator=(const fiber_state&) = delete;
  virtual ~fiber_state();

  // end() destroys the fiber_local values, then the context: the fiber is over. Destructors
  // of fiber_local values see the whole context. The context's values are destroyed one at
  // a time, the most recently defined variable first, each unbound before its destructor
  // runs: a destructor reads the variables still bound, and a set() in it binds in the
  // context being taken down (that value is destroyed in turn).
  void end() noexcept;

  // report_unhandled() takes an exception nobody can catch (a throwing destructor during
  // cleanup); a plain thread prints it to stderr, a pool fiber hands it to its executor.
  virtual void report_unhandled(std::exception_ptr e) noexcept;
};

// print_unhandled() writes e's what() to stderr, saying where it was caught.
void print_unhandled(const std::exception_ptr& e, const char* where) noexcept;

// dismantle() drops the snapshot of s as end() describes. A snapshot shared with others is
// merely let go: its values live on in them.
void dismantle(context_state& s) noexcept;

extern constinit thread_local fiber_state* tl_fiber WEFT_TLS_MODEL;
extern constinit thread_local context_state* tl_context WEFT_TLS_MODEL;
// tl_root mirrors tl_context->root (empty_node for an empty or absent context), so that
// get() is one thread-local load away from the trie. Whoever changes the current context's
// root, or which context is current, calls publish_root().
extern constinit thread_local const node* tl_root WEFT_TLS_MODEL;

inline void publish_root(const node* root) noexcept {
  tl_root = root ? root : &empty_node;
}

// current_root() is the current snapshot, nullptr when empty.
inline node* current_root() noexcept {
  const node* r = tl_root;
  return r == &empty_node ? nullptr : const_cast<node*>(r);
}

// thread_state() is the calling fiber's record, creating the plain thread's record on first
// use (it is destroyed, with its values, when the thread exits).
fiber_state& thread_state();

// current_context() is the calling fiber's current context, created on first use.
inline context_state& current_context() {
  if (context_state* s = tl_context) return *s;
  return *thread_state().current;
}

}  // namespace weft::detail
