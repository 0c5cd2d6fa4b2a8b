// Model-based randomized test of the context semantics: thousands of random
// set/get/reset/copy/run operations over dozens of variables, checked step by step against a
// naive reference model (a std::map copied on every snapshot). Half of the variables hold an
// int (stored in the trie's nodes), half a string-carrying struct (stored in cells), so both
// representations and their mix are checked.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <weft/context.hpp>

#include "test_support.hpp"

namespace {

using model_map = std::map<int, int>;  // variable index -> value

struct saved_context {
  weft::context real;
  model_map model;
  bool entered = false;
};

// boxed is a value that lives in a cell: not trivially copyable.
struct boxed {
  std::string text;
  explicit boxed(int v) : text(std::to_string(v)) {}
};

int unbox(int v) {
  return v;
}
int unbox(const boxed& b) {
  return std::stoi(b.text);
}

// any_token / any_var hide which of the two value types a variable has.
struct any_token {
  virtual ~any_token() = default;
  virtual std::optional<int> old_value() const = 0;
};

struct any_var {
  virtual ~any_var() = default;
  virtual std::unique_ptr<any_token> set(int v) = 0;
  virtual std::optional<int> try_get() const = 0;
  virtual void get() const = 0;
  virtual void reset(any_token& t) = 0;
  virtual std::optional<int> find(const weft::context& c) const = 0;
  virtual bool in_place() const = 0;
};

template <class T>
struct typed_token final : any_token {
  explicit typed_token(weft::token<T> t) : real(std::move(t)) {}
  std::optional<int> old_value() const override {
    const T* p = real.old_value();
    return p ? std::optional<int>(unbox(*p)) : std::nullopt;
  }
  weft::token<T> real;
};

template <class T>
struct typed_var final : any_var {
  explicit typed_var(std::string name) : var(std::move(name)) {}
  typed_var(std::string name, int fallback) : var(std::move(name), T(fallback)) {}
  std::unique_ptr<any_token> set(int v) override {
    return std::make_unique<typed_token<T>>(var.set(T(v)));
  }
  std::optional<int> try_get() const override {
    const T* p = var.try_get();
    return p ? std::optional<int>(unbox(*p)) : std::nullopt;
  }
  void get() const override { (void)var.get(); }
  void reset(any_token& t) override { var.reset(dynamic_cast<typed_token<T>&>(t).real); }
  std::optional<int> find(const weft::context& c) const override {
    const T* p = c.find(var);
    return p ? std::optional<int>(unbox(*p)) : std::nullopt;
  }
  bool in_place() const override { return weft::detail::stored_in_place<T>; }
  weft::context_var<T> var;
};

struct recorded_token {
  int var;
  std::unique_ptr<any_token> real;
  std::optional<int> old;  // model's view of the old value
  int context;             // which context it was made in (-1 = the thread's own)
  bool used = false;
};

class model_test {
 public:
  model_test(unsigned seed, int nvars) : rng_(seed) {
    for (int i = 0; i < nvars; ++i) {
      // Every third variable has a default, to mix the two lookups; odd ones live in cells.
      const std::string name = "m" + std::to_string(i);
      if (i % 2 == 0) {
        vars_.push_back(i % 3 == 0 ? std::make_unique<typed_var<int>>(name, -i)
                                   : std::make_unique<typed_var<int>>(name));
      } else {
        vars_.push_back(i % 3 == 0 ? std::make_unique<typed_var<boxed>>(name, -i)
                                   : std::make_unique<typed_var<boxed>>(name));
      }
    }
    REQUIRE(vars_[0]->in_place());
    if (nvars > 1) REQUIRE(!vars_[1]->in_place());
  }

  void run(int steps) {
    model_map own;
    steps_left_ = steps;
    weft::context base;
    base.run([&] { session(own, -1, 0); });
  }

 private:
  int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }

  // check_all() compares every variable (a random sample of 64 when there are many).
  void check_all(const model_map& m) {
    const int n = int(vars_.size());
    for (int k = 0; k < std::min(n, 64); ++k) {
      const int i = n <= 64 ? k : pick(n);
      const auto it = m.find(i);
      const std::optional<int> got = vars_[i]->try_get();
      if (it != m.end()) {
        REQUIRE(got == it->second);
      } else if (i % 3 == 0) {
        REQUIRE(got == -i);
      } else {
        REQUIRE(got == std::nullopt);
        REQUIRE(test::code_of([&] { (void)vars_[i]->get(); }) == int(weft::errc::lookup_failed));
      }
    }
    REQUIRE(weft::copy_context().size() == m.size());
  }

  // session() performs random operations in the current context, whose model is m and whose
  // identity is `id`; it returns when the step budget runs out or (when nested) at random.
  void session(model_map& m, int id, int depth) {
    while (steps_left_-- > 0) {
      const int op = pick(100);
      if (op < 30) {  // set
        const int v = pick(int(vars_.size()));
        const int value = pick(1000);
        std::optional<int> old;
        if (auto it = m.find(v); it != m.end()) old = it->second;
        tokens_.push_back({v, vars_[v]->set(value), old, id});
        m[v] = value;
      } else if (op < 50) {  // reset a random outstanding token
        if (tokens_.empty()) continue;
        recorded_token& t = tokens_[pick(int(tokens_.size()))];
        any_var& var = *vars_[t.var];
        REQUIRE(t.real->old_value() == t.old);
        if (t.used) {
          REQUIRE(test::code_of([&] { var.reset(*t.real); }) == int(weft::errc::token_used));
        } else if (t.context != id) {
          REQUIRE(test::code_of([&] { var.reset(*t.real); }) ==
                  int(weft::errc::token_wrong_context));
        } else {
          var.reset(*t.real);
          t.used = true;
          if (t.old) {
            m[t.var] = *t.old;
          } else {
            m.erase(t.var);
          }
        }
      } else if (op < 55) {  // reset with another variable's token
        if (tokens_.empty()) continue;
        recorded_token& t = tokens_[pick(int(tokens_.size()))];
        // Another variable of the same value type (a token of another type does not compile).
        int other = (t.var + 2) % int(vars_.size());
        while (other % 2 != t.var % 2 || other == t.var)
          other = (other + 1) % int(vars_.size());
        // Like Python, a used token is reported as used before anything else.
        REQUIRE(test::code_of([&] { vars_[other]->reset(*t.real); }) ==
                int(t.used ? weft::errc::token_used : weft::errc::token_wrong_var));
      } else if (op < 75) {  // get everything
        check_all(m);
      } else if (op < 85) {  // copy the current context
        auto s = std::make_unique<saved_context>();
        s->real = weft::copy_context();
        s->model = m;
        if (saved_.size() < 32) {
          saved_.push_back(std::move(s));
        } else {
          // Replace one that is not being run (its id may be reused by a new snapshot only
          // if no token refers to it: tokens remember the index, so drop those tokens).
          const int victim = pick(int(saved_.size()));
          if (saved_[victim]->entered) continue;
          std::erase_if(tokens_, [&](const recorded_token& t) { return t.context == victim; });
          saved_[victim] = std::move(s);
        }
      } else if (op < 95) {  // run a saved context
        if (saved_.empty() || depth >= 4) continue;
        const int which = pick(int(saved_.size()));
        saved_context& s = *saved_[which];
        if (s.entered) {
          REQUIRE(test::code_of([&] { s.real.run([] {}); }) ==
                  int(weft::errc::context_already_entered));
          continue;
        }
        s.entered = true;
        s.real.run([&] { session(s.model, which, depth + 1); });
        s.entered = false;
        check_all(m);        // the outer context is untouched by what ran inside
      } else if (op < 98) {  // compare every saved snapshot with its model
        for (auto& s : saved_) {
          REQUIRE(s->real.size() == s->model.size());
          for (int i = 0; i < std::min(int(vars_.size()), 64); ++i) {
            const std::optional<int> f = vars_[i]->find(s->real);
            const auto it = s->model.find(i);
            REQUIRE(f.has_value() == (it != s->model.end()));
            if (f) REQUIRE(*f == it->second);
          }
        }
      } else if (depth > 0) {
        return;  // leave this run()
      }
    }
  }

  std::mt19937 rng_;
  std::vector<std::unique_ptr<any_var>> vars_;
  std::vector<recorded_token> tokens_;
  std::vector<std::unique_ptr<saved_context>> saved_;
  int steps_left_ = 0;
};

}  // namespace

TEST_CASE("random set/get/reset/copy/run sequences agree with a copy-on-snapshot model",
          "[context][model]") {
  const unsigned seed = GENERATE(1u, 2u, 3u, 4u, 5u, 6u, 7u, 8u);
  const int nvars = GENERATE(5, 40);
  INFO("seed " << seed << ", " << nvars << " variables");
  model_test(seed, nvars).run(4000);
}

TEST_CASE("a long random run over many variables agrees with the model", "[context][model]") {
  model_test(42, 1100).run(20000);
}
