// main.cpp: Catch2's main for every unit test, with assertions made safe to use from fibers
// that run at once on several workers.
//
// Catch2 2.x records an assertion in its run context without a lock, so two CHECKs on two
// workers race (ThreadSanitizer reports it, and the counts may tear). Every assertion, INFO
// and SECTION reaches the run context through Catch::getResultCapture(); this file puts a
// proxy there that takes one mutex around each call. Only the recording is serialised: the
// operands of a CHECK are evaluated before the call, so a CHECK whose expression parks its
// fiber (`CHECK(task.get() == 1)`) holds no lock while it waits.
// This covers the CHECK/REQUIRE family. INFO, CAPTURE, WARN and FAIL build their message
// before the call, with Catch's unsynchronised string streams and message counter: use them
// on the test's own thread, or while no other fiber asserts.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include <mutex>
#include <optional>

namespace {

class locked_capture final : public Catch::IResultCapture {
  // Defined before its uses: they deduce its return type.
  template <class F>
  decltype(auto) locked(F&& f) const {
    std::lock_guard g(m_);
    return f();
  }

 public:
  explicit locked_capture(Catch::IResultCapture& inner) : inner_(inner) {}

  bool sectionStarted(Catch::SectionInfo const& info, Catch::Counts& assertions) override {
    return locked([&] { return inner_.sectionStarted(info, assertions); });
  }
  void sectionEnded(Catch::SectionEndInfo const& info) override {
    locked([&] { inner_.sectionEnded(info); });
  }
  void sectionEndedEarly(Catch::SectionEndInfo const& info) override {
    locked([&] { inner_.sectionEndedEarly(info); });
  }
  auto acquireGeneratorTracker(Catch::StringRef name, Catch::SourceLineInfo const& line)
      -> Catch::IGeneratorTracker& override {
    return locked(
        [&]() -> Catch::IGeneratorTracker& { return inner_.acquireGeneratorTracker(name, line); });
  }
#if defined(CATCH_CONFIG_ENABLE_BENCHMARKING)
  void benchmarkPreparing(std::string const& name) override {
    locked([&] { inner_.benchmarkPreparing(name); });
  }
  void benchmarkStarting(Catch::BenchmarkInfo const& info) override {
    locked([&] { inner_.benchmarkStarting(info); });
  }
  void benchmarkEnded(Catch::BenchmarkStats<> const& stats) override {
    locked([&] { inner_.benchmarkEnded(stats); });
  }
  void benchmarkFailed(std::string const& error) override {
    locked([&] { inner_.benchmarkFailed(error); });
  }
#endif
  void pushScopedMessage(Catch::MessageInfo const& message) override {
    locked([&] { inner_.pushScopedMessage(message); });
  }
  void popScopedMessage(Catch::MessageInfo const& message) override {
    locked([&] { inner_.popScopedMessage(message); });
  }
  void emplaceUnscopedMessage(Catch::MessageBuilder const& builder) override {
    locked([&] { inner_.emplaceUnscopedMessage(builder); });
  }
  void handleFatalErrorCondition(Catch::StringRef message) override {
    // From a signal handler: taking the lock could deadlock with the thread it interrupted.
    inner_.handleFatalErrorCondition(message);
  }
  void handleExpr(Catch::AssertionInfo const& info, Catch::ITransientExpression const& expr,
                  Catch::AssertionReaction& reaction) override {
    locked([&] { inner_.handleExpr(info, expr, reaction); });
  }
  void handleMessage(Catch::AssertionInfo const& info, Catch::ResultWas::OfType type,
                     Catch::StringRef const& message, Catch::AssertionReaction& reaction) override {
    locked([&] { inner_.handleMessage(info, type, message, reaction); });
  }
  void handleUnexpectedExceptionNotThrown(Catch::AssertionInfo const& info,
                                          Catch::AssertionReaction& reaction) override {
    locked([&] { inner_.handleUnexpectedExceptionNotThrown(info, reaction); });
  }
  void handleUnexpectedInflightException(Catch::AssertionInfo const& info,
                                         std::string const& message,
                                         Catch::AssertionReaction& reaction) override {
    locked([&] { inner_.handleUnexpectedInflightException(info, message, reaction); });
  }
  void handleIncomplete(Catch::AssertionInfo const& info) override {
    locked([&] { inner_.handleIncomplete(info); });
  }
  void handleNonExpr(Catch::AssertionInfo const& info, Catch::ResultWas::OfType type,
                     Catch::AssertionReaction& reaction) override {
    locked([&] { inner_.handleNonExpr(info, type, reaction); });
  }
  bool lastAssertionPassed() override {
    return locked([&] { return inner_.lastAssertionPassed(); });
  }
  void assertionPassed() override {
    locked([&] { inner_.assertionPassed(); });
  }
  std::string getCurrentTestName() const override {
    return locked([&] { return inner_.getCurrentTestName(); });
  }
  const Catch::AssertionResult* getLastResult() const override {
    return locked([&] { return inner_.getLastResult(); });
  }
  void exceptionEarlyReported() override {
    locked([&] { inner_.exceptionEarlyReported(); });
  }

 private:
  Catch::IResultCapture& inner_;
  mutable std::mutex m_;
};

// Installs the proxy once the run context exists (it makes itself the result capture in its
// constructor, just before it announces the run) and takes it out when the run ends.
struct lock_assertions : Catch::TestEventListenerBase {
  using TestEventListenerBase::TestEventListenerBase;
  void testRunStarting(Catch::TestRunInfo const& info) override {
    TestEventListenerBase::testRunStarting(info);
    inner_ = &Catch::getResultCapture();
    proxy_.emplace(*inner_);
    Catch::getCurrentMutableContext().setResultCapture(&*proxy_);
  }
  void testRunEnded(Catch::TestRunStats const& stats) override {
    if (inner_ != nullptr) Catch::getCurrentMutableContext().setResultCapture(inner_);
    TestEventListenerBase::testRunEnded(stats);
  }

 private:
  Catch::IResultCapture* inner_ = nullptr;
  std::optional<locked_capture> proxy_;
};

}  // namespace

CATCH_REGISTER_LISTENER(lock_assertions)
