// var_registry.hpp: the name and printer of every context_var, by slot, so that a snapshot
// can be shown to people (executor::fibers(), dump()).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <weft/detail/snapshot.hpp>

namespace weft::detail {

// describe() is name -> printed value of every variable bound in the snapshot rooted at
// root (may be null), in slot order, i.e. the order the variables were defined. A value whose
// operator<< throws shows as "<operator<< threw>".
std::vector<std::pair<std::string, std::string>> describe(const node* root);

}  // namespace weft::detail
