// weft/detail/snapshot.hpp: the immutable, refcounted trie that maps variable slots to values.
//
// A snapshot is a pointer to a root node (nullptr = empty). Nodes are shared between snapshots
// and never change while shared; a node whose count is 1 belongs to one snapshot only and may
// be edited in place. Each context_var owns a dense slot number; the trie is indexed by it,
// 32 ways per level, so up to 32 variables are one node and up to 1024 are two levels.
//
// A value lives in a refcounted cell of its own, except a small trivially copyable one (an
// int, a time point, a pointer: stored_in_place<T>), which is stored in the node itself.
// Copying a shared node must take a reference to every cell in it -- one locked instruction
// each, the bulk of the cost of the first set() after a spawn -- while in-place values are
// copied with the node's bytes. They have no destructor, so their lifetime is not observable.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <exception>
#include <new>
#include <type_traits>

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

// stored_in_place<T>: values of T are kept in the trie's nodes rather than in cells.
template <class T>
inline constexpr bool stored_in_place = std::is_trivially_copyable_v<T> &&
                                        sizeof(T) <= sizeof(void*) && alignof(T) <= alignof(void*);

// entry is one position of a node: a child node* (above height 0), a cell* (nullptr =
// unbound), or the bytes of an in-place value (the node's in_place bit says which).
union entry {
  void* ptr;
  alignas(void*) unsigned char bytes[sizeof(void*)];
};

// node is one level of the trie. At height 0 the entries are values, above they are node*.
struct node : counted {
  std::uint32_t height;
  std::uint32_t count;     // values bound in this subtree
  std::uint32_t used;      // bit i = entries[i] is not empty
  std::uint32_t in_place;  // height 0: bit i = entries[i] holds an in-place value (bound)
  entry entries[kNodeWidth];
};

// references() are the entries of n that hold a reference: child nodes and cells.
inline std::uint32_t references(const node* n) noexcept {
  return n->used & ~n->in_place;
}

// each_bit() calls f(i) for every bit i set in mask, lowest first.
template <class F>
void each_bit(std::uint32_t mask, F f) {
  for (; mask != 0; mask &= mask - 1)
    f(unsigned(__builtin_ctz(mask)));
}

// binding is one slot's value, whichever way it is stored: what set() binds, what a token
// keeps to restore, what unbinding returns.
struct binding {
  entry value{nullptr};   // the cell (nullptr = unbound), or the in-place value's bytes
  bool in_place = false;  // value.bytes hold the value

  bool bound() const noexcept { return in_place || value.ptr != nullptr; }
  cell* as_cell() const noexcept { return in_place ? nullptr : static_cast<cell*>(value.ptr); }
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

// release() of a binding drops its cell; an in-place value needs nothing.
inline void release(const binding& b) noexcept {
  release(b.as_cell());
}

void release(node* n) noexcept;

// leaf_of() returns the height-0 node that would hold slot in the snapshot rooted at n (not
// null), or nullptr. It allocates nothing and takes no lock.
inline const node* leaf_of(const node* n, std::uint32_t slot) noexcept {
  std::uint32_t h = n->height;
  if (h == 0) [[likely]] {
    return slot < kNodeWidth ? n : nullptr;
  }
  if ((slot >> (kNodeBits * h)) >= kNodeWidth) return nullptr;
  while (h != 0) {
    n = static_cast<const node*>(n->entries[(slot >> (kNodeBits * h)) & kNodeMask].ptr);
    if (n == nullptr) return nullptr;
    --h;
  }
  return n;
}

// find_value<T>() is the value of T bound to slot in the snapshot rooted at n (not null), or
// nullptr. With up to 32 variables it is two loads (three for an in-place value).
template <class T>
inline const T* find_value(const node* n, std::uint32_t slot) noexcept {
  const node* leaf = leaf_of(n, slot);
  const unsigned i = slot & kNodeMask;
  if constexpr (stored_in_place<T>) {
    if (leaf == nullptr || ((leaf->in_place >> i) & 1) == 0) return nullptr;
    const T* p = std::launder(reinterpret_cast<const T*>(leaf->entries[i].bytes));
    if (p == nullptr) __builtin_unreachable();  // lets callers drop their null test
    return p;
  } else {
    const cell* c = leaf != nullptr ? static_cast<const cell*>(leaf->entries[i].ptr) : nullptr;
    return c != nullptr ? &static_cast<const value_cell<T>*>(c)->value : nullptr;
  }
}

// value_of<T>() is the value a binding of a T holds, or nullptr when it is unbound.
template <class T>
inline const T* value_of(const binding& b) noexcept {
  if constexpr (stored_in_place<T>) {
    return b.in_place ? std::launder(reinterpret_cast<const T*>(b.value.bytes)) : nullptr;
  } else {
    const cell* c = b.as_cell();
    return c != nullptr ? &static_cast<const value_cell<T>*>(c)->value : nullptr;
  }
}

// make_binding<T>(a...) is a new binding of T(a...): a cell, or the bytes of an in-place value.
// Throws what T's constructor or the allocation throws.
template <class T, class... A>
binding make_binding(A&&... a) {
  binding b;
  if constexpr (stored_in_place<T>) {
    const T v(static_cast<A&&>(a)...);
    std::memcpy(b.value.bytes, &v, sizeof(T));  // implicitly creates the T in the bytes
    b.in_place = true;
  } else {
    b.value.ptr = static_cast<cell*>(new value_cell<T>(static_cast<A&&>(a)...));
  }
  return b;
}

// bound_in() is true when slot has a value in the snapshot rooted at n (may be null).
inline bool bound_in(const node* n, std::uint32_t slot) noexcept {
  const node* leaf = n != nullptr ? leaf_of(n, slot) : nullptr;
  return leaf != nullptr && ((leaf->used >> (slot & kNodeMask)) & 1) != 0;
}

// empty_node is what the current-root pointer shows for an empty context: a node with
// nothing bound, so that get() needs no null check. It is never shared or freed.
extern constinit node empty_node;

// assoc makes the snapshot *root bind slot to b (an unbound b unbinds), copying shared nodes
// on the path and editing exclusively owned ones in place. It takes over the caller's
// reference to b's cell and returns the displaced binding (its reference now the caller's).
// If allocation fails it throws with *root and b untouched (b is still the caller's).
binding assoc(node*& root, std::uint32_t slot, const binding& b);

}  // namespace weft::detail
