// weft/propagation.hpp: a request's context crossing a process boundary -- which
// context_vars travel, under which keys (HTTP headers, gRPC metadata), written with inject()
// on the way out and read with extract() on the way in.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <weft/context.hpp>
#include <weft/context_var.hpp>
#include <weft/w3c.hpp>

namespace weft {

// propagator lists the context_vars that travel and their keys. Build one at start-up and
// share it: inject() and extract() are const and may run concurrently.
//
//   weft::propagator p = weft::propagator::standard();   // traceparent, tracestate, baggage
//   p.add(request_id, "x-request-id");
//   p.inject([&](std::string_view k, std::string_view v) { req.set(k, v); });   // outgoing
//   weft::context ctx = p.extract([&](std::string_view k) -> std::optional<std::string> {
//     ... the incoming header k, if present ... });
//   ctx.run(handle, request);                                                      // incoming
class propagator {
 public:
  using put_fn = std::function<void(std::string_view key, std::string_view value)>;
  using get_fn = std::function<std::optional<std::string>(std::string_view key)>;

  // standard() carries w3c::trace (traceparent, tracestate) and w3c::baggage (baggage).
  static propagator standard();

  // add(var, key) carries a string variable as is. The key must be one that is valid both
  // as a gRPC metadata key and as an HTTP header name: one or more of lowercase letters,
  // digits, '-', '_' and '.', not starting with "grpc-" (gRPC's own). Any other key, or one
  // added already, throws weft::error(invalid_argument) naming it.
  propagator& add(const context_var<std::string>& var, std::string key);

  // add(var, key, encode, decode) carries any variable: encode() makes the text sent,
  // decode() reads it back (nullopt, or an exception, for text it cannot read: the entry is
  // then skipped). Keys as for add(var, key).
  // (T comes from the variable alone, so lambdas may be passed without naming T.)
  template <class T>
  propagator& add(const context_var<T>& var, std::string key,
                  std::type_identity_t<std::function<std::string(const T&)>> encode,
                  std::type_identity_t<std::function<std::optional<T>(std::string_view)>> decode) {
    auto& v = const_cast<context_var<T>&>(var);  // set() changes the context, not the var
    entry e;
    e.inject = [&v, key, encode = std::move(encode)](fields& out) {
      if (const T* value = v.find_in(detail::current_root())) out.emplace_back(key, encode(*value));
    };
    e.extract = [&v, key, decode = std::move(decode)](const get_fn& get) {
      std::optional<std::string> text = get(key);
      if (!text) return;
      std::optional<T> value;
      try {
        value = decode(*text);
      } catch (...) {
        return;  // undecodable: skipped
      }
      if (value) (void)v.set(std::move(*value));
    };
    return add_entry({std::move(key)}, std::move(e));
  }

  // add_trace_context() carries w3c::trace as `traceparent` and `tracestate`: on the way in
  // an invalid traceparent is ignored (and its tracestate with it), an invalid tracestate
  // alone is dropped.
  propagator& add_trace_context();
  // add_baggage() carries w3c::baggage as `baggage`; an invalid header is ignored.
  propagator& add_baggage();

  // inject() calls put(key, value) for every carried variable bound in the current context
  // (a variable's default does not travel). Every value is made first and put() is called
  // only then: an encode() that throws makes inject() throw that before any put(), never
  // half done. A value that is not printable ASCII (a byte outside 0x20..0x7e: CR, LF, NUL,
  // TAB, other control bytes, or non-ASCII such as UTF-8) is not sent -- that variable is
  // skipped as if unbound, the others go -- so no value can forge or break a header or gRPC
  // metadata. To carry such text, give add() an encode() that escapes it (and a decode()
  // that reads it back); w3c::baggage is percent-encoded that way.
  void inject(const put_fn& put) const;

  // extract() is a copy of the current context with every carried variable that get(key)
  // finds and that decodes bound to it; missing or undecodable entries are skipped (never an
  // exception for them). A key that arrived several times should be given to extract()
  // once, its values joined with ',' in the order they came (HTTP's rule for repeated
  // fields; weft::grpc::serve does so for metadata).
  context extract(const get_fn& get) const;

 private:
  using fields = std::vector<std::pair<std::string, std::string>>;
  struct entry {
    std::function<void(fields&)> inject;         // appends what it sends
    std::function<void(const get_fn&)> extract;  // runs inside the context being built
  };
  void check_free(const std::string& key) const;
  // add_entry() adds e, which carries its variable under `keys` (all or nothing).
  propagator& add_entry(std::vector<std::string> keys, entry e);

  std::vector<std::string> keys_;
  std::vector<entry> entries_;
};

}  // namespace weft
