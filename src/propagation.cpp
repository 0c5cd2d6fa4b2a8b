// propagation.cpp: the propagator's string entries, the W3C entries, inject and extract.
#include <weft/propagation.hpp>

#include <weft/error.hpp>

namespace weft {

propagator propagator::standard() {
  propagator p;
  p.add_trace_context();
  p.add_baggage();
  return p;
}

void propagator::check_free(const std::string& key) const {
  if (key.empty()) throw error(errc::invalid_argument, "weft: propagator::add: empty key");
  for (const std::string& k : keys_) {
    if (k == key) {
      throw error(errc::invalid_argument,
                  "weft: propagator::add: key '" + key + "' is carried already");
    }
  }
}

propagator& propagator::add_entry(std::vector<std::string> keys, entry e) {
  for (const std::string& k : keys)
    check_free(k);
  entries_.reserve(entries_.size() + 1);
  keys_.reserve(keys_.size() + keys.size());
  entries_.push_back(std::move(e));
  for (std::string& k : keys)
    keys_.push_back(std::move(k));
  return *this;
}

propagator& propagator::add(const context_var<std::string>& var, std::string key) {
  auto& v = const_cast<context_var<std::string>&>(var);
  entry e;
  e.inject = [&v, key](const put_fn& put) {
    if (const std::string* value = v.find_in(detail::current_root())) put(key, *value);
  };
  e.extract = [&v, key](const get_fn& get) {
    if (std::optional<std::string> text = get(key)) (void)v.set(std::move(*text));
  };
  return add_entry({std::move(key)}, std::move(e));
}

propagator& propagator::add_trace_context() {
  entry e;
  e.inject = [](const put_fn& put) {
    const w3c::trace_context* t = w3c::trace.find_in(detail::current_root());
    if (t == nullptr) return;
    put("traceparent", t->parent.to_string());
    if (!t->state.members.empty()) put("tracestate", t->state.to_string());
  };
  e.extract = [](const get_fn& get) {
    const std::optional<std::string> parent_text = get("traceparent");
    if (!parent_text) return;
    const std::optional<w3c::traceparent> parent = w3c::traceparent::parse(*parent_text);
    if (!parent) return;
    w3c::trace_context t{*parent, {}};
    if (const std::optional<std::string> state_text = get("tracestate")) {
      if (std::optional<w3c::tracestate> state = w3c::tracestate::parse(*state_text)) {
        t.state = std::move(*state);
      }
    }
    (void)w3c::trace.set(std::move(t));
  };
  return add_entry({"traceparent", "tracestate"}, std::move(e));
}

propagator& propagator::add_baggage() {
  entry e;
  e.inject = [](const put_fn& put) {
    const w3c::baggage_list* b = w3c::baggage.find_in(detail::current_root());
    if (b == nullptr || b->entries.empty()) return;
    put("baggage", w3c::format_baggage(b->entries));
  };
  e.extract = [](const get_fn& get) {
    const std::optional<std::string> text = get("baggage");
    if (!text) return;
    if (auto entries = w3c::parse_baggage(*text)) {
      (void)w3c::baggage.set(w3c::baggage_list{std::move(*entries)});
    }
  };
  return add_entry({"baggage"}, std::move(e));
}

void propagator::inject(const put_fn& put) const {
  for (const entry& e : entries_)
    e.inject(put);
}

context propagator::extract(const get_fn& get) const {
  context ctx = copy_context();
  ctx.run([&] {
    for (const entry& e : entries_)
      e.extract(get);
  });
  return ctx;
}

}  // namespace weft
