// weft/detail/snapshot.hpp: the immutable, refcounted trie that maps variable slots to values.
//
// A snapshot is a pointer to a root node (nullptr = empty). Nodes are shared between snapshots
// and never change while shared; a node whose count is 1 belongs to one snapshot only and may
// be edited in place. Each context_var owns a dense slot number; the trie is indexed by it,
// 32 ways per level, so up to 32 variables are one node and up to 1024 are two levels.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>

#include <weft/detail/assert.hpp>

namespace weft::detail {

// report_unhandled_here() hands an exception that has nowhere to go (a destructor that threw
// during cleanup, a scoped guard whose reset failed) to the calling fiber's executor
// (executor_options::on_unhandled_exception), or prints it to stderr on a plain thread.
void report_unhandled_here(std::exception_ptr e) noexcept;

// counted is the header shared by nodes and value cells: the number of references to it.
struct counted {
  std::atomic<std::uint32_t> refs{1};
};

// cell holds one bound value. Cells are immutable: setting a variable makes a new cell.
struct cell : counted {
  void (*destroy)(cell*) noexcept;
};

template <class T>
struct value_cell final : cell {
  T value;

  template <class... A>
  explicit value_cell(A&&... a) : cell{{}, &destroy_cell}, value(static_cast<A&&>(a)...) {}

  // A value whose destructor throws has its exception reported, not the process terminated.
  static void destroy_cell(cell* c) noexcept {
    try {
      delete static_cast<value_cell*>(c);
    } catch (...) {
      report_unhandled_here(std::current_exception());
    }
  }
};

inline constexpr unsigned kNodeBits = 5;
inline constexpr unsigned kNodeWidth = 1u << kNodeBits;
inline constexpr std::uint32_t kNodeMask = kNodeWidth - 1;

// node is one level of the trie. At height 0 the entries are cell*, above they are node*.
struct node : counted {
  std::uint32_t height;
  std::uint32_t count;  // values bound in this subtree
  void* entries[kNodeWidth];
};

inline void retain(counted* c) noexcept {
  c->refs.fetch_add(1, std::memory_order_relaxed);
}

// last_reference() is true when the caller's reference is the only one left. Then nobody
// else can take a new one, so it may be dropped without an atomic read-modify-write.
inline bool last_reference(counted* c) noexcept {
  if (c->refs.load(std::memory_order_acquire) == 1) return true;
  const std::uint32_t before = c->refs.fetch_sub(1, std::memory_order_acq_rel);
  WEFT_ASSERT(before != 0, "a snapshot node or value released more often than retained");
  return before == 1;
}

inline void release(cell* c) noexcept {
  if (c != nullptr && last_reference(c)) c->destroy(c);
}

void release(node* n) noexcept;

// lookup_in() returns the cell bound to slot in the snapshot rooted at n (not null), or
// nullptr. It allocates nothing and takes no lock: with up to 32 variables it is two loads.
inline const cell* lookup_in(const node* n, std::uint32_t slot) noexcept {
  std::uint32_t h = n->height;
  if (h == 0) [[likely]] {
    return slot < kNodeWidth ? static_cast<const cell*>(n->entries[slot]) : nullptr;
  }
  if ((slot >> (kNodeBits * h)) >= kNodeWidth) return nullptr;
  while (h != 0) {
    n = static_cast<const node*>(n->entries[(slot >> (kNodeBits * h)) & kNodeMask]);
    if (n == nullptr) return nullptr;
    --h;
  }
  return static_cast<const cell*>(n->entries[slot & kNodeMask]);
}

// lookup() is lookup_in() for a snapshot that may be empty (nullptr).
inline const cell* lookup(const node* n, std::uint32_t slot) noexcept {
  return n != nullptr ? lookup_in(n, slot) : nullptr;
}

// empty_node is what the current-root pointer shows for an empty context: a node with
// nothing bound, so that get() needs no null check. It is never shared or freed.
extern constinit node empty_node;

// assoc makes the snapshot *root bind slot to c (c == nullptr unbinds), copying shared nodes
// on the path and editing exclusively owned ones in place. It takes over the caller's
// reference to c and returns the displaced cell (its reference now belongs to the caller).
// If allocation fails it throws with *root and c untouched (c is still the caller's).
cell* assoc(node*& root, std::uint32_t slot, cell* c);

}  // namespace weft::detail
