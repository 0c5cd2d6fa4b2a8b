// fiber_state.cpp: the per-fiber / per-thread record and the thread-local pointers to it.
#include <cstdlib>

#include <weft/detail/fiber_state.hpp>

namespace weft::detail {

constinit thread_local fiber_state* tl_fiber WEFT_TLS_MODEL = nullptr;
constinit thread_local context_state* tl_context WEFT_TLS_MODEL = nullptr;
constinit node empty_node{{}, 0, 0, {}};
constinit thread_local const node* tl_root WEFT_TLS_MODEL = &empty_node;

namespace {

// thread_record is a plain thread's record; it lives until the thread exits.
struct thread_record {
  fiber_state state;
  ~thread_record() {
    state.end();
    tl_fiber = nullptr;
    tl_context = nullptr;
    publish_root(nullptr);
  }
};

}  // namespace

void fiber_state::end() noexcept {
  // A value's destructor may touch another fiber_local (creating it again), so repeat until
  // a pass finds nothing, as pthread keys do.
  for (int pass = 0; pass < 8 && locals_size != 0; ++pass) {
    local_entry* entries = locals;
    const std::uint32_t n = locals_size;
    locals = nullptr;
    locals_size = 0;
    for (std::uint32_t i = 0; i < n; ++i) {
      if (entries[i].object) entries[i].destroy(entries[i].object);
    }
    std::free(entries);
  }
  release(own.root);
  own.root = nullptr;
  if (tl_context == &own) publish_root(nullptr);
}

fiber_state::~fiber_state() {
  end();
}

fiber_state& thread_state() {
  if (fiber_state* f = tl_fiber) return *f;
  thread_local thread_record record;
  tl_fiber = &record.state;
  tl_context = record.state.current;
  publish_root(tl_context->root);
  return record.state;
}

}  // namespace weft::detail
