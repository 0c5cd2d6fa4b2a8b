// Tests of W3C Trace Context / Baggage and the propagator (API.md "Crossing process
// boundaries").
#include <catch2/catch.hpp>

#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <weft/weft.hpp>

#include "test_support.hpp"

using test::code_of;
using weft::errc;
using weft::w3c::parse_baggage;
using weft::w3c::traceparent;
using weft::w3c::tracestate;

namespace {

const std::string kTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
const std::string kParent = "00f067aa0ba902b7";
const std::string kValid = "00-" + kTrace + "-" + kParent + "-01";

std::string with_version(const std::string& v, const std::string& flags = "01") {
  return v + "-" + kTrace + "-" + kParent + "-" + flags;
}

using entries = std::vector<std::pair<std::string, std::string>>;

}  // namespace

// ---- traceparent ------------------------------------------------------------------------

TEST_CASE("traceparent: a valid version-00 header", "[w3c][traceparent]") {
  const auto t = traceparent::parse(kValid);
  REQUIRE(t);
  CHECK(t->trace_id[0] == 0x4b);
  CHECK(t->trace_id[15] == 0x36);
  CHECK(t->parent_id[0] == 0x00);
  CHECK(t->parent_id[7] == 0xb7);
  CHECK(t->flags == 1);
  CHECK(t->sampled());
  CHECK(t->to_string() == kValid);
  // Flags are kept as sent; only bit 0 means "sampled".
  CHECK(traceparent::parse(with_version("00", "00"))->sampled() == false);
  CHECK(traceparent::parse(with_version("00", "ff"))->flags == 0xff);
  CHECK(traceparent::parse(with_version("00", "02"))->sampled() == false);
}

TEST_CASE("traceparent: spaces and tabs around the value are ignored", "[w3c][traceparent]") {
  CHECK(traceparent::parse(" " + kValid));
  CHECK(traceparent::parse(kValid + " "));
  CHECK(traceparent::parse("\t " + kValid + " \t"));
  CHECK(traceparent::parse(" \t" + kValid + "\t")->to_string() == kValid);
}

TEST_CASE("traceparent: later versions are parsed as 00, extra fields ignored",
          "[w3c][traceparent]") {
  CHECK(traceparent::parse(with_version("01")));
  CHECK(traceparent::parse(with_version("cc")));
  CHECK(traceparent::parse(with_version("cc") + "-what-the-future-holds"));
  CHECK(traceparent::parse(with_version("fe") + "-"));
  // Only the sampled flag of a later version is kept.
  CHECK(traceparent::parse(with_version("cc", "09"))->flags == 1);
  CHECK(traceparent::parse(with_version("cc", "08"))->flags == 0);
  // A later version re-emitted is version 00.
  CHECK(traceparent::parse(with_version("cc"))->to_string() == kValid);
  // More data must start with '-'.
  CHECK_FALSE(traceparent::parse(with_version("cc") + "x"));
  CHECK_FALSE(traceparent::parse(with_version("cc") + "0"));
}

TEST_CASE("traceparent: every malformed header is rejected", "[w3c][traceparent]") {
  const std::vector<std::string> bad = {
      "",
      " ",
      "00",
      "ff-" + kTrace + "-" + kParent + "-01",  // version ff is forbidden
      kValid + "-",                            // version 00 has exactly four fields
      kValid + "-00",
      kValid + "0",
      kValid.substr(0, 54),                                      // short
      "00-" + kTrace.substr(1) + "-" + kParent + "-01",          // trace-id 31
      "00-" + kTrace + "0-" + kParent + "-01",                   // trace-id 33
      "00-" + kTrace + "-" + kParent.substr(1) + "-01",          // parent-id 15
      "00-" + kTrace + "-" + kParent + "-1",                     // flags 1 digit
      "00-" + kTrace + "-" + kParent + "-001",                   // flags 3 digits
      "00-00000000000000000000000000000000-" + kParent + "-01",  // zero trace-id
      "00-" + kTrace + "-0000000000000000-01",                   // zero parent-id
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-" + kParent + "-01",  // uppercase
      "00-" + kTrace + "-00F067AA0BA902B7-01",                   // uppercase
      "00-" + kTrace + "-" + kParent + "-0A",                    // uppercase flags
      "0A-" + kTrace + "-" + kParent + "-01",                    // uppercase version
      "0x-" + kTrace + "-" + kParent + "-01",                    // not hex
      "00-" + kTrace.substr(0, 31) + "g-" + kParent + "-01",     // not hex
      "00_" + kTrace + "-" + kParent + "-01",                    // separator
      "00-" + kTrace + "_" + kParent + "-01",                    // separator
      "00-" + kTrace + "-" + kParent + "_01",                    // separator
      "00 -" + kTrace + "-" + kParent + "-01",                   // space inside
      "00-" + kTrace + " -" + kParent + "-01",                   // space inside
      "000-" + kTrace + "-" + kParent + "-01",                   // version 3 digits
      "0-" + kTrace + "-" + kParent + "-01",                     // version 1 digit
      "00-" + kTrace + "-" + kParent + "-01\n",                  // not OWS
      std::string("00-") + kTrace + "-" + kParent + "-0" + std::string(1, '\0'),  // NUL
  };
  for (const std::string& h : bad) {
    INFO("header: '" << h << "'");
    CHECK_FALSE(traceparent::parse(h));
  }
}

TEST_CASE("traceparent: random() and child()", "[w3c][traceparent]") {
  const traceparent a = traceparent::random();
  CHECK(a.sampled());
  CHECK(traceparent::parse(a.to_string()) == a);
  CHECK_FALSE(traceparent::random(false).sampled());
  CHECK(traceparent::random() != a);
  const traceparent c = a.child();
  CHECK(c.trace_id == a.trace_id);
  CHECK(c.flags == a.flags);
  CHECK(c.parent_id != a.parent_id);
}

// ---- tracestate -------------------------------------------------------------------------

TEST_CASE("tracestate: members in order, with spaces, tabs and empty members",
          "[w3c][tracestate]") {
  auto t = tracestate::parse("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
  REQUIRE(t);
  CHECK(t->members == entries{{"rojo", "00f067aa0ba902b7"}, {"congo", "t61rcWkgMzE"}});
  CHECK(t->to_string() == "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
  t = tracestate::parse(" rojo=1 , ,\tcongo=2 ,");
  REQUIRE(t);
  CHECK(t->members == entries{{"rojo", "1"}, {"congo", "2"}});
  CHECK(tracestate::parse("")->members.empty());
  CHECK(tracestate::parse(" , ")->members.empty());
  CHECK(tracestate::parse("k=a value with spaces")->members[0].second == "a value with spaces");
}

TEST_CASE("tracestate: the key grammar", "[w3c][tracestate]") {
  CHECK(weft::w3c::is_tracestate_key("a"));
  CHECK(weft::w3c::is_tracestate_key("a0_-*/z"));
  CHECK(weft::w3c::is_tracestate_key(std::string(256, 'a')));
  CHECK_FALSE(weft::w3c::is_tracestate_key(std::string(257, 'a')));
  CHECK_FALSE(weft::w3c::is_tracestate_key(""));
  CHECK_FALSE(weft::w3c::is_tracestate_key("0abc"));  // a simple key starts with a letter
  CHECK_FALSE(weft::w3c::is_tracestate_key("Abc"));
  CHECK_FALSE(weft::w3c::is_tracestate_key("a.b"));
  // tenant@system
  CHECK(weft::w3c::is_tracestate_key("fw529a3039@dt"));
  CHECK(weft::w3c::is_tracestate_key("1tenant@sys"));  // a tenant may start with a digit
  CHECK(weft::w3c::is_tracestate_key(std::string(241, 't') + "@" + std::string(14, 's')));
  CHECK_FALSE(weft::w3c::is_tracestate_key(std::string(242, 't') + "@s"));
  CHECK_FALSE(weft::w3c::is_tracestate_key("t@" + std::string(15, 's')));
  CHECK_FALSE(weft::w3c::is_tracestate_key("t@1sys"));  // a system starts with a letter
  CHECK_FALSE(weft::w3c::is_tracestate_key("t@"));
  CHECK_FALSE(weft::w3c::is_tracestate_key("@s"));
  CHECK_FALSE(weft::w3c::is_tracestate_key("a@b@c"));
}

TEST_CASE("tracestate: the value grammar", "[w3c][tracestate]") {
  CHECK(weft::w3c::is_tracestate_value("x"));
  CHECK(weft::w3c::is_tracestate_value(std::string(256, 'v')));
  CHECK_FALSE(weft::w3c::is_tracestate_value(std::string(257, 'v')));
  CHECK_FALSE(weft::w3c::is_tracestate_value(""));
  CHECK_FALSE(weft::w3c::is_tracestate_value("a="));
  CHECK_FALSE(weft::w3c::is_tracestate_value("a,b"));
  CHECK_FALSE(weft::w3c::is_tracestate_value("trailing "));
  CHECK(weft::w3c::is_tracestate_value(" leading"));
  CHECK_FALSE(weft::w3c::is_tracestate_value("tab\there"));
  CHECK_FALSE(weft::w3c::is_tracestate_value("\x7f"));
  CHECK_FALSE(weft::w3c::is_tracestate_value("caf\xc3\xa9"));
}

TEST_CASE("tracestate: a bad member, a duplicate or a 33rd member discards the header",
          "[w3c][tracestate]") {
  CHECK_FALSE(tracestate::parse("rojo"));
  CHECK_FALSE(tracestate::parse("rojo=1,Congo=2"));
  CHECK_FALSE(tracestate::parse("rojo=1,congo="));
  CHECK_FALSE(tracestate::parse("rojo=1,rojo=2"));
  CHECK_FALSE(tracestate::parse("ro jo=1"));
  CHECK_FALSE(tracestate::parse("rojo =1"));
  std::string members;
  for (int i = 0; i < 32; ++i)
    members += (i ? "," : "") + std::string("k") + std::to_string(i) + "=v";
  CHECK(tracestate::parse(members)->members.size() == 32);
  CHECK_FALSE(tracestate::parse(members + ",k32=v"));
  CHECK(tracestate::parse(members + ", ,")->members.size() == 32);  // empties do not count
}

// ---- baggage ----------------------------------------------------------------------------

TEST_CASE("baggage: members, spaces, properties and percent-encoding", "[w3c][baggage]") {
  CHECK(parse_baggage("userId=alice,serverNode=DF%2028,isProduction=false") ==
        entries{{"userId", "alice"}, {"serverNode", "DF 28"}, {"isProduction", "false"}});
  CHECK(parse_baggage(" a = 1 ,\tb=2 ") == entries{{"a", "1"}, {"b", "2"}});
  CHECK(parse_baggage("a=1;prop1;prop2=x , b=2 ; p = %41") == entries{{"a", "1"}, {"b", "2"}});
  CHECK(parse_baggage("euro=%E2%82%AC,lower=%e2%82%ac") ==
        entries{{"euro", "\xe2\x82\xac"}, {"lower", "\xe2\x82\xac"}});
  CHECK(parse_baggage("empty=") == entries{{"empty", ""}});
  CHECK(parse_baggage("k!#$&'*+-.^_`|~9=v") == entries{{"k!#$&'*+-.^_`|~9", "v"}});
}

TEST_CASE("baggage: every malformed header is rejected whole", "[w3c][baggage]") {
  const std::vector<std::string> bad = {
      ",",       "a",        "=1",    "a b=1",  "a=1,,b=2",      "a=1,",
      "a=\"q\"", "a=1%",     "a=1%4", "a=1%zz", "a=x\\y",        "a=1;=x",
      "a=1;p q", "a=1;p=\"", "a=1 2", "(a)=1",  "a=caf\xc3\xa9", "a=\x01",
  };
  for (const std::string& h : bad) {
    INFO("header: '" << h << "'");
    CHECK_FALSE(parse_baggage(h));
  }
}

TEST_CASE("baggage: an empty or all-whitespace header is the empty list", "[w3c][baggage]") {
  CHECK(parse_baggage("") == entries{});
  CHECK(parse_baggage(" \t  ") == entries{});
  CHECK(weft::w3c::format_baggage({}).empty());
  CHECK(parse_baggage(weft::w3c::format_baggage({})) == entries{});
  CHECK_FALSE(parse_baggage(" , "));  // an empty member is still malformed
}

TEST_CASE(
    "baggage: percent-decoded bytes that are not UTF-8 become U+FFFD, one per maximal "
    "invalid part",
    "[w3c][baggage]") {
  const std::string fffd = "\xef\xbf\xbd";
  CHECK(parse_baggage("a=%FF") == entries{{"a", fffd}});
  CHECK(parse_baggage("a=caf%C3") == entries{{"a", "caf" + fffd}});           // cut short
  CHECK(parse_baggage("a=%E2%82x") == entries{{"a", fffd + "x"}});            // one part
  CHECK(parse_baggage("a=%C0%AF") == entries{{"a", fffd + fffd}});            // overlong
  CHECK(parse_baggage("a=%ED%A0%80") == entries{{"a", fffd + fffd + fffd}});  // surrogate
  CHECK(parse_baggage("a=%F4%90%80%80") == entries{{"a", fffd + fffd + fffd + fffd}});
  CHECK(parse_baggage("a=%80%C3%A9") == entries{{"a", fffd + "\xc3\xa9"}});
  // Valid UTF-8 is kept as it is, up to 4 bytes and U+10FFFF.
  CHECK(parse_baggage("a=%F0%9F%98%80,b=%F4%8F%BF%BF,c=%EF%BF%BD") ==
        entries{{"a", "\xf0\x9f\x98\x80"}, {"b", "\xf4\x8f\xbf\xbf"}, {"c", fffd}});
  // format_baggage writes the bytes it is given; the receiver replaces what is not UTF-8.
  CHECK(weft::w3c::format_baggage({{"a", "\xff"}}) == "a=%FF");
}

TEST_CASE("baggage: limits of 180 members and 8192 bytes", "[w3c][baggage]") {
  std::string h;
  for (int i = 0; i < 180; ++i)
    h += (i ? "," : "") + std::string("k") + std::to_string(i) + "=v";
  CHECK(parse_baggage(h)->size() == 180);
  CHECK_FALSE(parse_baggage(h + ",k180=v"));
  const std::string big = "k=" + std::string(8190, 'v');
  CHECK(big.size() == 8192);
  CHECK(parse_baggage(big));
  CHECK_FALSE(parse_baggage(big + "v"));
}

TEST_CASE("format_baggage: encodes, round-trips, keeps members whole within the limits",
          "[w3c][baggage]") {
  const entries e = {{"user", "alice"}, {"odd", "a b,c;d%e\"f\\g=h\xc3\xa9"}, {"empty", ""}};
  const std::string h = weft::w3c::format_baggage(e);
  CHECK(h.find(' ') == std::string::npos);
  CHECK(h.rfind("user=alice,odd=a%20b%2Cc%3Bd%25e%22f%5Cg=h%C3%A9,empty=", 0) == 0);
  CHECK(parse_baggage(h) == e);
  CHECK(code_of([] {
          (void)weft::w3c::format_baggage({{"bad key", "v"}});
        }) == int(errc::invalid_argument));
  CHECK(test::message_of([] {
          (void)weft::w3c::format_baggage({{"bad key", "v"}});
        }).find("'bad key'") != std::string::npos);
  entries many;
  for (int i = 0; i < 200; ++i)
    many.emplace_back("k" + std::to_string(i), "v");
  CHECK(parse_baggage(weft::w3c::format_baggage(many))->size() == 180);
  entries large;
  for (int i = 0; i < 5; ++i)
    large.emplace_back("k" + std::to_string(i), std::string(3000, 'x'));
  const std::string cut = weft::w3c::format_baggage(large);
  CHECK(cut.size() <= 8192);
  const auto back = parse_baggage(cut);
  REQUIRE(back);
  CHECK(back->size() == 2);  // whole members only
  for (const auto& [k, v] : *back)
    CHECK(v.size() == 3000);
}

TEST_CASE(
    "format_baggage: an entry past the limits is left out whole, later ones that fit "
    "still go",
    "[w3c][baggage]") {
  const entries e = {
      {"a", std::string(5000, 'x')}, {"too_big", std::string(5000, 'y')}, {"small", "1"}};
  const auto back = parse_baggage(weft::w3c::format_baggage(e));
  REQUIRE(back);
  CHECK(*back == entries{e[0], e[2]});
}

TEST_CASE("parsers never throw on arbitrary input", "[w3c][fuzz]") {
  std::mt19937 rng(12345);
  const std::string alphabet = "0123456789abcdefABCDEF-=,; \t%@_*/\"\\\x01\x7f\xc3";
  const std::vector<std::string> seeds = {kValid, "rojo=1,congo=2", "a=1;p=2,b=%41"};
  for (int i = 0; i < 20000; ++i) {
    std::string s = seeds[std::size_t(i) % seeds.size()];
    const int edits = int(rng() % 6);
    for (int k = 0; k < edits && !s.empty(); ++k) {
      const std::size_t at = rng() % s.size();
      switch (rng() % 3) {
        case 0:
          s[at] = alphabet[rng() % alphabet.size()];
          break;
        case 1:
          s.erase(at, 1);
          break;
        default:
          s.insert(at, 1, alphabet[rng() % alphabet.size()]);
      }
    }
    CHECK_NOTHROW(traceparent::parse(s));
    CHECK_NOTHROW(tracestate::parse(s));
    CHECK_NOTHROW(parse_baggage(s));
    // What parses formats back to something that parses to the same.
    if (auto t = traceparent::parse(s)) CHECK(traceparent::parse(t->to_string()) == t);
    if (auto t = tracestate::parse(s)) CHECK(tracestate::parse(t->to_string()) == t);
    if (auto b = parse_baggage(s)) CHECK(parse_baggage(weft::w3c::format_baggage(*b)) == b);
  }
}

// ---- the propagator ---------------------------------------------------------------------

namespace {

weft::context_var<std::string> request_id("prop.request_id");
weft::context_var<std::string> with_default("prop.with_default", "fallback");
weft::context_var<int> priority("prop.priority");

weft::propagator make_propagator() {
  weft::propagator p = weft::propagator::standard();
  p.add(request_id, "x-request-id");
  p.add(with_default, "x-with-default");
  p.add(  // T deduced from the variable: plain lambdas do
      priority, "x-priority", [](const int& v) { return std::to_string(v); },
      [](std::string_view s) -> std::optional<int> {
        if (s == "throw") throw std::runtime_error("cannot decode");
        if (s.empty() || s.find_first_not_of("0123456789") != std::string_view::npos) {
          return std::nullopt;
        }
        return std::stoi(std::string(s));
      });
  return p;
}

using headers = std::map<std::string, std::string, std::less<>>;

headers inject(const weft::propagator& p) {
  headers h;
  p.inject([&h](std::string_view k, std::string_view v) { h.emplace(k, v); });
  return h;
}

weft::context extract(const weft::propagator& p, const headers& h) {
  return p.extract([&h](std::string_view k) -> std::optional<std::string> {
    auto it = h.find(k);
    if (it == h.end()) return std::nullopt;
    return it->second;
  });
}

}  // namespace

TEST_CASE("propagator: inject writes bound variables only, extract reads them back",
          "[propagation]") {
  const weft::propagator p = make_propagator();
  CHECK(inject(p).empty());  // nothing bound; a default does not travel
  auto r = request_id.scoped("req-7");
  auto q = priority.scoped(3);
  auto span = weft::w3c::start_span();
  auto b = weft::w3c::baggage.scoped({{{"tenant", "acme corp"}}});
  const headers h = inject(p);
  CHECK(h.at("x-request-id") == "req-7");
  CHECK(h.at("x-priority") == "3");
  CHECK(h.count("x-with-default") == 0);
  CHECK(h.at("traceparent") == weft::w3c::trace.get().parent.to_string());
  CHECK(h.count("tracestate") == 0);  // empty: not sent
  CHECK(h.at("baggage") == "tenant=acme%20corp");

  // On "the other side": a plain thread with an empty context.
  std::thread([&] {
    weft::context ctx = extract(p, h);
    CHECK(request_id.try_get() == nullptr);  // the caller's context is not touched
    ctx.run([&] {
      CHECK(request_id.get() == "req-7");
      CHECK(priority.get() == 3);
      CHECK(with_default.get() == "fallback");
      CHECK(weft::w3c::trace.get().parent == *traceparent::parse(h.at("traceparent")));
      CHECK(*weft::w3c::baggage.get().find("tenant") == "acme corp");
    });
  }).join();
}

TEST_CASE("propagator: missing, undecodable and invalid entries are skipped", "[propagation]") {
  const weft::propagator p = make_propagator();
  auto kept = priority.scoped(9);  // extract starts from a copy of the current context
  const headers h = {{"x-priority", "not a number"},
                     {"traceparent", "00-zz-bad"},
                     {"tracestate", "rojo=1"},
                     {"baggage", "a=1,,"}};
  extract(p, h).run([] {
    CHECK(priority.get() == 9);
    CHECK(request_id.try_get() == nullptr);
    CHECK(weft::w3c::trace.try_get() == nullptr);
    CHECK(weft::w3c::baggage.try_get() == nullptr);
  });
  extract(p, {{"x-priority", "throw"}}).run([] { CHECK(priority.get() == 9); });
  // A valid traceparent with an invalid tracestate: the trace without the state.
  extract(p, {{"traceparent", kValid}, {"tracestate", "Bad=1"}}).run([] {
    CHECK(weft::w3c::trace.get().parent.to_string() == kValid);
    CHECK(weft::w3c::trace.get().state.members.empty());
  });
  extract(p, {{"traceparent", kValid}, {"tracestate", "rojo=1,congo=2"}}).run([] {
    CHECK(weft::w3c::trace.get().state.to_string() == "rojo=1,congo=2");
    CHECK(inject(make_propagator()).at("tracestate") == "rojo=1,congo=2");
  });
}

TEST_CASE("propagator: keys are checked", "[propagation]") {
  weft::propagator p;
  p.add(request_id, "x-request-id");
  CHECK(code_of([&] { p.add(request_id, "x-request-id"); }) == int(errc::invalid_argument));
  CHECK(code_of([&] { p.add(with_default, ""); }) == int(errc::invalid_argument));
  p.add_trace_context();
  CHECK(code_of([&] { p.add(with_default, "tracestate"); }) == int(errc::invalid_argument));
  CHECK(code_of([&] { p.add_trace_context(); }) == int(errc::invalid_argument));
  CHECK(test::message_of([&] { p.add(with_default, "traceparent"); }).find("'traceparent'") !=
        std::string::npos);
}

TEST_CASE("propagator: a key must be a lowercase header and metadata key, named when refused",
          "[propagation]") {
  weft::propagator p;
  const std::vector<std::string> bad = {"X-Request-Id", "x request",   "x:id",
                                        "x\r\nid",      "caf\xc3\xa9", std::string("x\0id", 4),
                                        "x/id",         "grpc-status", ":path"};
  for (const std::string& key : bad) {
    INFO("key: '" << key << "'");
    CHECK(code_of([&] { p.add(request_id, key); }) == int(errc::invalid_argument));
    CHECK(code_of([&] {
            p.add(
                priority, key, [](const int& v) { return std::to_string(v); },
                [](std::string_view) { return std::optional<int>(1); });
          }) == int(errc::invalid_argument));
  }
  CHECK(test::message_of([&] { p.add(request_id, "X-Request-Id"); }).find("'X-Request-Id'") !=
        std::string::npos);
  // Bytes that do not print are named escaped, not written into the message as they are.
  CHECK(test::message_of([&] { p.add(request_id, "x\r\nid"); }).find("'x\\x0d\\x0aid'") !=
        std::string::npos);
  // Digits, '-', '_' and '.' are fine; nothing was added by the refusals.
  p.add(request_id, "x-request_id.v2");
  p.add(with_default, "x-request-id");
}

TEST_CASE(
    "propagator: inject skips a value that is not printable ASCII, so no header is "
    "ever forged",
    "[propagation]") {
  const weft::propagator p = make_propagator();
  auto q = priority.scoped(3);
  for (const std::string& value : {std::string("a\r\nx-evil: 1"), std::string("a\nb"),
                                   std::string("a\rb"), std::string("a\0b", 3), std::string("a\tb"),
                                   std::string("a\x7f"), std::string("caf\xc3\xa9")}) {
    auto r = request_id.scoped(value);
    const headers h = inject(p);
    CHECK(h.count("x-request-id") == 0);
    CHECK(h.at("x-priority") == "3");  // the others still go
    for (const auto& [k, v] : h) {
      CHECK(v.find_first_of(std::string("\r\n\0", 3)) == std::string::npos);
    }
  }
  auto r = request_id.scoped("plain value ~!");
  CHECK(inject(p).at("x-request-id") == "plain value ~!");
  // An encode() that makes such text is skipped the same way.
  weft::propagator typed;
  typed.add(
      priority, "x-priority", [](const int&) { return std::string("1\r\nx-evil: 2"); },
      [](std::string_view) { return std::optional<int>(1); });
  CHECK(inject(typed).empty());
}

TEST_CASE("propagator: an encode() that throws leaves inject() undone: put() is not called",
          "[propagation]") {
  weft::propagator p;
  p.add(request_id, "x-request-id");
  p.add(
      priority, "x-priority",
      [](const int&) -> std::string { throw std::runtime_error("cannot encode"); },
      [](std::string_view) { return std::optional<int>(1); });
  auto r = request_id.scoped("req-1");
  auto q = priority.scoped(1);
  headers h;
  CHECK_THROWS_WITH(p.inject([&h](std::string_view k, std::string_view v) { h.emplace(k, v); }),
                    "cannot encode");
  CHECK(h.empty());
}

TEST_CASE("start_span: a new span of the current trace, or a new trace", "[propagation]") {
  CHECK(weft::w3c::trace.try_get() == nullptr);
  {
    auto root = weft::w3c::start_span();
    const weft::w3c::trace_context first = weft::w3c::trace.get();
    CHECK(first.parent.sampled());
    {
      auto call = weft::w3c::start_span();
      CHECK(weft::w3c::trace.get().parent.trace_id == first.parent.trace_id);
      CHECK(weft::w3c::trace.get().parent.parent_id != first.parent.parent_id);
    }
    CHECK(weft::w3c::trace.get() == first);
  }
  CHECK(weft::w3c::trace.try_get() == nullptr);
}

TEST_CASE("a trace and baggage show in fiber listings", "[propagation][introspection]") {
  weft::executor ex(1);
  ex.run([&] {
    const auto t = *traceparent::parse(kValid);
    auto tr = weft::w3c::trace.scoped({t, *tracestate::parse("rojo=1")});
    auto b = weft::w3c::baggage.scoped({{{"a", "1"}, {"b", "2"}}});
    const auto all = ex.fibers();
    REQUIRE(all.size() == 1);
    CHECK(all[0].context == entries{{"w3c.trace", kValid + ";rojo=1"}, {"w3c.baggage", "a=1,b=2"}});
  });
}
