// fiber_state.cpp: the per-fiber / per-thread record and the thread-local pointers to it.
#include <cstdio>
#include <cstdlib>

#include <weft/detail/fiber_state.hpp>

namespace weft::detail {

constinit thread_local fiber_state* tl_fiber WEFT_TLS_MODEL = nullptr;
constinit thread_local context_state* tl_context WEFT_TLS_MODEL = nullptr;
constinit node empty_node{{}, 0, 0, 0, 0, {}};
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

void print_unhandled(const std::exception_ptr& e, const char* where) noexcept {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    std::fprintf(stderr, "weft: unhandled exception %s: %s\n", where, x.what());
  } catch (...) {
    std::fprintf(stderr, "weft: unhandled exception %s (not a std::exception)\n", where);
  }
}

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
  dismantle(own);
}

void fiber_state::report_unhandled(std::exception_ptr e) noexcept {
  print_unhandled(e, "during cleanup");
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

void report_unhandled_here(std::exception_ptr e) noexcept {
  if (fiber_state* f = tl_fiber) {
    f->report_unhandled(std::move(e));
  } else {
    print_unhandled(e, "during cleanup");
  }
}

}  // namespace weft::detail
