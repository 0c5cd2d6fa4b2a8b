// Model-based randomized test of the context semantics: thousands of random
// set/get/reset/copy/run operations over dozens of variables, checked step by step against a
// naive reference model (a std::map copied on every snapshot).
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

struct recorded_token {
  int var;
  weft::token<int> real;
  std::optional<int> old;  // model's view of the old value
  int context;             // which context it was made in (-1 = the thread's own)
  bool used = false;
};

class model_test {
 public:
  model_test(unsigned seed, int nvars) : rng_(seed) {
    for (int i = 0; i < nvars; ++i) {
      // Every third variable has a default, to mix the two lookups.
      if (i % 3 == 0) {
        vars_.push_back(std::make_unique<weft::context_var<int>>("m" + std::to_string(i), -i));
      } else {
        vars_.push_back(std::make_unique<weft::context_var<int>>("m" + std::to_string(i)));
      }
    }
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
      const int* got = vars_[i]->try_get();
      if (it != m.end()) {
        REQUIRE(got != nullptr);
        REQUIRE(*got == it->second);
      } else if (i % 3 == 0) {
        REQUIRE(got != nullptr);
        REQUIRE(*got == -i);
      } else {
        REQUIRE(got == nullptr);
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
        weft::context_var<int>& var = *vars_[t.var];
        REQUIRE((t.real.old_value() ? std::optional<int>(*t.real.old_value()) : std::nullopt) ==
                t.old);
        if (t.used) {
          REQUIRE(test::code_of([&] { var.reset(t.real); }) == int(weft::errc::token_used));
        } else if (t.context != id) {
          REQUIRE(test::code_of([&] { var.reset(t.real); }) ==
                  int(weft::errc::token_wrong_context));
        } else {
          var.reset(t.real);
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
        const int other = (t.var + 1) % int(vars_.size());
        // Like Python, a used token is reported as used before anything else.
        REQUIRE(test::code_of([&] { vars_[other]->reset(t.real); }) ==
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
            const int* f = s->real.find(*vars_[i]);
            const auto it = s->model.find(i);
            REQUIRE((f != nullptr) == (it != s->model.end()));
            if (f) REQUIRE(*f == it->second);
          }
        }
      } else if (depth > 0) {
        return;  // leave this run()
      }
    }
  }

  std::mt19937 rng_;
  std::vector<std::unique_ptr<weft::context_var<int>>> vars_;
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
