// context.cpp: the persistent trie behind snapshots, and the write side of context_var.
#include <atomic>
#include <cstring>
#include <new>
#include <utility>

#include <weft/detail/assert.hpp>

#include <weft/context.hpp>
#include <weft/error.hpp>

namespace weft::detail {
namespace {

node* make_node(std::uint32_t height) {
  auto* n = new node;
  n->height = height;
  n->count = 0;
  n->used = 0;
  n->in_place = 0;
  for (entry& e : n->entries)
    e.ptr = nullptr;
  return n;
}

// set_child() makes child (nullptr = none) entry i of the inner node m.
void set_child(node* m, unsigned i, node* child) noexcept {
  m->entries[i].ptr = child;
  m->used = (m->used & ~(1u << i)) | (child != nullptr ? 1u << i : 0u);
}

// clone() copies n; the copy shares (and so retains) every child and cell of n. In-place
// values are copied with the bytes.
node* clone(const node* n) {
  auto* m = new node;
  m->height = n->height;
  m->count = n->count;
  m->used = n->used;
  m->in_place = n->in_place;
  std::memcpy(static_cast<void*>(m->entries), n->entries, sizeof m->entries);
  each_bit(references(m), [m](unsigned i) { retain(static_cast<counted*>(m->entries[i].ptr)); });
  return m;
}

// entry_binding() is entry i of the leaf n as a binding (no reference taken).
binding entry_binding(const node* n, unsigned i) noexcept {
  return binding{n->entries[i], ((n->in_place >> i) & 1) != 0};
}

// put() stores b as entry i of the leaf n and returns the change in its number of values.
int put(node* n, unsigned i, const binding& b) noexcept {
  const int before = int((n->used >> i) & 1);
  n->entries[i] = b.value;
  n->in_place = (n->in_place & ~(1u << i)) | (b.in_place ? 1u << i : 0u);
  n->used = (n->used & ~(1u << i)) | (b.bound() ? 1u << i : 0u);
  return (b.bound() ? 1 : 0) - before;
}

// height_for() is the smallest trie height whose root can index slot.
std::uint32_t height_for(std::uint32_t slot) {
  std::uint32_t h = 0;
  while ((slot >> (kNodeBits * (h + 1))) != 0 && h < 6)
    ++h;
  return h;
}

// set_in() binds slot to c in the subtree n (height h, may be null) and returns the node
// that now stands for that subtree: n itself if it was exclusively ours (refs == 1, edited
// in place), otherwise a fresh node. Every node is allocated before anything is edited, and
// edits happen after the deeper levels returned, so a throw leaves the trie as it was.
// *old receives the displaced binding; *delta the change in the number of bound values.
node* set_in(node* n, std::uint32_t h, std::uint32_t slot, const binding& b, binding* old,
             int* delta) {
  node* m;
  bool fresh = true;
  if (n == nullptr) {
    m = make_node(h);
  } else if (n->refs.load(std::memory_order_acquire) == 1) {
    m = n;
    fresh = false;
  } else {
    m = clone(n);
  }
  const std::uint32_t i = (slot >> (kNodeBits * h)) & kNodeMask;
  if (h == 0) {
    // A clone retained the old cell for itself; either way that reference goes to the caller.
    *old = entry_binding(m, i);
    *delta = put(m, i, b);
    m->count += *delta;
    return m;
  }
  auto* child = static_cast<node*>(m->entries[i].ptr);
  node* replacement;
  try {
    replacement = set_in(child, h - 1, slot, b, old, delta);
  } catch (...) {
    if (fresh) release(m);
    throw;
  }
  // m's reference to a shared child that was copied goes; an emptied subtree is dropped.
  if (replacement != child && child != nullptr) release(child);
  if (replacement->count == 0) {
    release(replacement);
    replacement = nullptr;
  }
  set_child(m, i, replacement);
  m->count += *delta;
  return m;
}

// discard_growth() frees a chain of nodes that assoc() stacked above old_root (its child 0
// at the bottom borrows the caller's reference to old_root, which stays untouched).
void discard_growth(node* top, const node* old_root) noexcept {
  node* n = top;
  while (n != nullptr && n->height > old_root->height + 1) {
    n = static_cast<node*>(n->entries[0].ptr);
  }
  if (n != nullptr) set_child(n, 0, nullptr);
  release(top);
}

std::atomic<std::uint64_t> next_id_block{1};

// next_context_id() hands out context identities from a per-thread block, so making one
// touches no shared cache line.
std::uint64_t next_context_id() {
  constexpr std::uint64_t kBlock = 1024;
  thread_local std::uint64_t next = 0, end = 0;
  if (next == end) {
    next = next_id_block.fetch_add(1, std::memory_order_relaxed) * kBlock;
    end = next + kBlock;
  }
  return next++;
}

std::uint64_t identity(context_state& s) {
  if (s.id == 0) s.id = next_context_id();
  return s.id;
}

}  // namespace

void release(node* n) noexcept {
  if (n == nullptr || !last_reference(n)) return;
  each_bit(references(n), [n](unsigned i) {
    if (n->height == 0) {
      release(static_cast<cell*>(n->entries[i].ptr));
    } else {
      release(static_cast<node*>(n->entries[i].ptr));
    }
  });
  delete n;
}

binding assoc(node*& root, std::uint32_t slot, const binding& b) {
  if (!b.bound() && !bound_in(root, slot)) return {};  // nothing to unbind
  node* r = root;
  bool grown = false;
  if (r != nullptr && height_for(slot) > r->height) {
    // Grow upwards: the old root becomes child 0 of a taller one. Nothing is shared.
    node* top = nullptr;
    try {
      for (std::uint32_t h = r->height + 1; h <= height_for(slot); ++h) {
        node* up = make_node(h);
        set_child(up, 0, top != nullptr ? top : r);
        up->count = r->count;
        top = up;
      }
    } catch (...) {
      discard_growth(top, r);
      throw;
    }
    r = top;
    grown = true;
  }
  binding old;
  int delta = 0;
  node* result;
  try {
    result = set_in(r, r ? r->height : height_for(slot), slot, b, &old, &delta);
  } catch (...) {
    if (grown) discard_growth(r, root);
    throw;
  }
  if (result != r) release(r);
  if (result->count == 0) {
    release(result);
    result = nullptr;
  }
  root = result;
  return old;
}

void throw_lookup_failed(const std::string& name) {
  throw error(errc::lookup_failed, "weft: context_var '" + name + "' has no value and no default");
}

bind_result bind(std::uint32_t slot, const binding& b) {
  context_state& s = current_context();
  const std::uint64_t id = identity(s);
  node* r = s.root;
  if (b.bound() && r != nullptr && r->height == 0 && slot < kNodeWidth &&
      r->refs.load(std::memory_order_acquire) == 1) {
    // The common case -- a handful of variables, a snapshot nobody shares: edit in place.
    const binding old = entry_binding(r, slot);
    r->count += put(r, slot, b);
    return {old, id};
  }
  const binding old = assoc(s.root, slot, b);
  publish_root(s.root);
  return {old, id};
}

void reset(token_base& tok, const void* var, std::uint32_t slot, const char* name) {
  if (tok.used) {
    throw error(errc::token_used,
                std::string("weft: token of context_var '") + name + "' was already used");
  }
  if (tok.var != var) {
    throw error(errc::token_wrong_var, std::string("weft: token passed to context_var '") + name +
                                           "' .reset() was created by another context_var");
  }
  context_state& s = current_context();
  if (s.id != tok.context_id) {
    throw error(errc::token_wrong_context, std::string("weft: token of context_var '") + name +
                                               "' was created in another context");
  }
  if (cell* c = tok.old.as_cell()) retain(c);
  binding displaced;
  try {
    displaced = assoc(s.root, slot, tok.old);
  } catch (...) {
    release(tok.old.as_cell());
    throw;
  }
  publish_root(s.root);
  release(displaced);
  tok.used = true;
}

// ---- taking a fiber's context down at its end ------------------------------------------

namespace {

// unbind_last() removes the highest-slot binding of the exclusively owned trie s.root and
// returns it (its cell the caller's reference now), or nothing when it detached a shared subtree
// instead (its values live on in the snapshots sharing it). Emptied nodes are freed; an
// emptied trie leaves s.root null. Nothing allocates.
binding unbind_last(context_state& s) noexcept {
  node* path[8];
  unsigned at[8];
  unsigned depth = 0;
  node* n = s.root;
  binding taken;
  node* detached = nullptr;
  std::uint32_t removed = 0;
  for (;;) {
    WEFT_ASSERT(n->used != 0, "a node in a trie is never empty");
    const unsigned i = 31u - unsigned(__builtin_clz(n->used));
    path[depth] = n;
    at[depth] = i;
    ++depth;
    if (n->height == 0) {
      taken = entry_binding(n, i);
      put(n, i, binding{});
      removed = 1;
      break;
    }
    auto* child = static_cast<node*>(n->entries[i].ptr);
    if (child->refs.load(std::memory_order_acquire) != 1) {
      detached = child;
      set_child(n, i, nullptr);
      removed = child->count;
      break;
    }
    n = child;
  }
  // Fix the counts on the way up and free the nodes this emptied (all exclusively ours).
  for (unsigned k = depth; k-- > 0;) {
    node* m = path[k];
    m->count -= removed;
    if (m->count != 0) continue;
    if (k == 0) {
      s.root = nullptr;
      if (tl_context == &s) publish_root(nullptr);
    } else {
      set_child(path[k - 1], at[k - 1], nullptr);
    }
    delete m;
  }
  release(detached);
  return taken;
}

}  // namespace

void dismantle(context_state& s) noexcept {
  while (node* r = s.root) {
    if (r->refs.load(std::memory_order_acquire) != 1) {
      // Shared: the other holders keep the values. If they let go meanwhile, the values die
      // here with an empty context current, which is safe to read and to set.
      s.root = nullptr;
      if (tl_context == &s) publish_root(nullptr);
      release(r);
      continue;
    }
    // The binding is gone from the trie before its destructor runs: the destructor sees the
    // rest, and a set() it makes edits a trie that is whole.
    release(unbind_last(s));
  }
}

// ---- context objects -------------------------------------------------------------------

}  // namespace weft::detail

namespace weft {

using detail::node;

node* context::acquire() const noexcept {
  std::uint32_t g = guard_.fetch_add(kCopier, std::memory_order_acquire) + kCopier;
  // An enter or assignment that has not published its fields yet: they take a few stores.
  for (unsigned spins = 0; (g & (kEntered | kPublished)) == kEntered;) {
    detail::backoff(spins);
    g = guard_.load(std::memory_order_acquire);
  }
  node* r = ((g & kEntered) != 0 && runner_ != detail::tl_fiber) ? entry_root_ : state_.root;
  if (r != nullptr) detail::retain(r);
  guard_.fetch_sub(kCopier, std::memory_order_release);
  return r;
}

node* context::take() noexcept {
  if (guard_.load(std::memory_order_acquire) != 0) return acquire();
  return std::exchange(state_.root, nullptr);
}

const node* context::visible_root() const noexcept {
  const std::uint32_t g = guard_.load(std::memory_order_acquire);
  if ((g & kPublished) != 0 && runner_ != detail::tl_fiber) return entry_root_;
  return state_.root;
}

std::size_t context::size() const noexcept {
  const node* r = visible_root();
  return r != nullptr ? r->count : 0;
}

namespace {

[[noreturn]] void throw_assign_running() {
  throw error(errc::context_already_entered,
              "weft: assignment to a context that is being run (assign after run() returns)");
}

}  // namespace

void context::replace_root(node* incoming) {
  // Hold copies off (they take a few instructions) and refuse a context being run.
  std::uint32_t idle = 0;
  for (unsigned spins = 0;
       !guard_.compare_exchange_weak(idle, kEntered, std::memory_order_acquire);) {
    if ((idle & kEntered) != 0) {
      detail::release(incoming);
      throw_assign_running();
    }
    idle = 0;
    detail::backoff(spins);
  }
  node* outgoing = std::exchange(state_.root, incoming);
  state_.id = 0;  // tokens made in the old contents are refused from now on
  guard_.fetch_sub(kEntered, std::memory_order_release);
  detail::release(outgoing);
}

context& context::operator=(const context& other) {
  if (this != &other) replace_root(other.acquire());
  return *this;
}

context& context::operator=(context&& other) {
  if (this != &other) replace_root(other.take());
  return *this;
}

namespace detail {

entered_context::entered_context(context& target)
    : target_(target), fiber_(thread_state()), previous_(fiber_.current) {
  std::uint32_t idle = 0;
  for (unsigned spins = 0;
       !target_.guard_.compare_exchange_weak(idle, context::kEntered, std::memory_order_acquire);) {
    if ((idle & context::kEntered) != 0) {
      throw error(errc::context_already_entered,
                  "weft: context::run() on a context that is already being run (copy the "
                  "context to run the same snapshot twice)");
    }
    idle = 0;  // copies in progress finish within a few instructions
    backoff(spins);
  }
  // Copies made by other fibers during the run get the snapshot it began with; the extra
  // reference also keeps the run's first set from editing that snapshot in place.
  target_.entry_root_ = target_.state_.root;
  if (target_.entry_root_ != nullptr) retain(target_.entry_root_);
  target_.runner_ = &fiber_;
  target_.guard_.fetch_or(context::kPublished, std::memory_order_release);
  fiber_.current = &target_.state_;
  tl_context = &target_.state_;
  publish_root(target_.state_.root);
}

entered_context::~entered_context() {
  fiber_.current = previous_;
  tl_context = previous_;
  publish_root(previous_->root);
  // Wait out copies that may be reading entry_root_ (they take a few instructions), and
  // hold new ones off while the run's fields are cleared.
  std::uint32_t published = context::kEntered | context::kPublished;
  for (unsigned spins = 0; !target_.guard_.compare_exchange_weak(published, context::kEntered,
                                                                 std::memory_order_acq_rel);) {
    published = context::kEntered | context::kPublished;
    backoff(spins);
  }
  node* entry = std::exchange(target_.entry_root_, nullptr);
  target_.runner_ = nullptr;
  target_.guard_.fetch_sub(context::kEntered, std::memory_order_release);
  release(entry);
}

}  // namespace detail
}  // namespace weft
