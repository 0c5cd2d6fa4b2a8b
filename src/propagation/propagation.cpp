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

namespace {

// printable() is s with every byte outside printable ASCII written as \xNN: a key named in a
// message must not carry control bytes into a log.
std::string printable(std::string_view s) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f && c != '\\') {
      out.push_back(c);
    } else {
      out += "\\x";
      out.push_back(digits[u >> 4]);
      out.push_back(digits[u & 15]);
    }
  }
  return out;
}

// is_key() is true for a key valid both as gRPC metadata (lowercase letters, digits, '-',
// '_', '.') and as an HTTP field name (a token), and not reserved by gRPC.
bool is_key(std::string_view key) noexcept {
  if (key.empty() || key.starts_with("grpc-")) return false;
  for (const char c : key) {
    const bool allowed =
        (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
    if (!allowed) return false;
  }
  return true;
}

// is_sendable() is true for a value that is printable ASCII: what gRPC metadata allows, and
// what no HTTP stack reads as the end of a header.
bool is_sendable(std::string_view value) noexcept {
  for (const char c : value) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u > 0x7e) return false;
  }
  return true;
}

}  // namespace

void propagator::check_free(const std::string& key) const {
  if (key.empty()) throw error(errc::invalid_argument, "weft: propagator::add: empty key");
  if (!is_key(key)) {
    throw error(errc::invalid_argument,
                "weft: propagator::add: key '" + printable(key) +
                    "' is not a lowercase header and metadata key (a-z, 0-9, '-', '_', '.'; "
                    "not grpc-*)");
  }
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
  e.inject = [&v, key](fields& out) {
    if (const std::string* value = v.find_in(detail::current_root())) out.emplace_back(key, *value);
  };
  e.extract = [&v, key](const get_fn& get) {
    if (std::optional<std::string> text = get(key)) (void)v.set(std::move(*text));
  };
  return add_entry({std::move(key)}, std::move(e));
}

propagator& propagator::add_trace_context() {
  entry e;
  e.inject = [](fields& out) {
    const w3c::trace_context* t = w3c::trace.find_in(detail::current_root());
    if (t == nullptr) return;
    out.emplace_back("traceparent", t->parent.to_string());
    if (!t->state.members.empty()) out.emplace_back("tracestate", t->state.to_string());
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
  e.inject = [](fields& out) {
    const w3c::baggage_list* b = w3c::baggage.find_in(detail::current_root());
    if (b == nullptr || b->entries.empty()) return;
    out.emplace_back("baggage", w3c::format_baggage(b->entries));
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
  // All values first: an encode() that throws must leave nothing half sent.
  fields out;
  out.reserve(keys_.size());
  for (const entry& e : entries_)
    e.inject(out);
  for (const auto& [key, value] : out) {
    if (is_sendable(value)) put(key, value);
  }
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
