// var_registry.cpp: slots of context_vars, with their names and printers.
#include "context/var_registry.hpp"

#include <deque>
#include <mutex>
#include <sstream>
#include <string>

#include <weft/context_var.hpp>
#include <weft/error.hpp>

namespace weft::detail {
namespace {

struct var_entry {
  std::string name;
  value_printer print;
};

// Slots are handed out under the lock, so entry i is slot i. A deque: entries never move,
// so a reader may use one after dropping the lock.
struct registry {
  std::mutex lock;
  std::deque<var_entry> vars;
};

registry& the_registry() {
  static registry* r = new registry;  // never destroyed: variables outlive static destructors
  return *r;
}

// walk() lists the bound slots under n with where each value is stored (see value_printer).
void walk(const node* n, std::uint32_t prefix,
          std::vector<std::pair<std::uint32_t, const void*>>& out) {
  each_bit(n->used, [&](unsigned i) {
    const entry& e = n->entries[i];
    const std::uint32_t slot = (prefix << kNodeBits) | i;
    if (n->height != 0) {
      walk(static_cast<const node*>(e.ptr), slot, out);
    } else {
      out.emplace_back(slot,
                       ((n->in_place >> i) & 1) != 0 ? static_cast<const void*>(e.bytes) : e.ptr);
    }
  });
}

}  // namespace

std::uint32_t register_var(const std::string& name, value_printer print) {
  registry& r = the_registry();
  std::lock_guard<std::mutex> g(r.lock);
  if (r.vars.size() >= max_context_vars) {
    throw error(errc::invalid_argument,
                "weft: context_var '" + name + "': the process has made " +
                    std::to_string(max_context_vars) +
                    " context_vars, the most there can be (slots are never reused: define "
                    "context_vars at namespace scope, not at run time)");
  }
  r.vars.push_back({name, print});
  return static_cast<std::uint32_t>(r.vars.size() - 1);
}

std::vector<std::pair<std::string, std::string>> describe(const node* root) {
  std::vector<std::pair<std::string, std::string>> result;
  if (root == nullptr || root == &empty_node) return result;
  std::vector<std::pair<std::uint32_t, const void*>> cells;
  walk(root, 0, cells);  // at most 7 levels deep: slots are 32-bit
  registry& r = the_registry();
  std::vector<const var_entry*> entries;
  entries.reserve(cells.size());
  {
    std::lock_guard<std::mutex> g(r.lock);
    for (const auto& c : cells)
      entries.push_back(&r.vars[c.first]);
  }
  result.reserve(cells.size());
  std::ostringstream text;
  for (std::size_t i = 0; i < cells.size(); ++i) {
    text.str({});
    text.clear();
    try {
      entries[i]->print(cells[i].second, text);
    } catch (...) {
      text.str({});
      text.clear();
      text << "<operator<< threw>";
    }
    result.emplace_back(entries[i]->name, text.str());
  }
  return result;
}

}  // namespace weft::detail
