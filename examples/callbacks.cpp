// callbacks: carrying the current context into a callback that a library runs on its own
// thread, with bind_context.
//
// A pretend client library calls back on a plain std::thread it owns. Wrapping the
// callback with weft::bind_context makes it run inside a copy of the context that was
// current when the request was made, so the request id is there without being passed.
//
// Run: ./build/examples/callbacks
#include <cstdio>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <weft/weft.hpp>

weft::context_var<std::string> request_id("request_id", "<none>");

// A library that knows nothing about weft: it calls back on a thread of its own.
class async_client {
 public:
  void fetch(std::string url, std::function<void(std::string)> done) {
    threads_.emplace_back(
        [url = std::move(url), done = std::move(done)] { done("200 OK " + url); });
  }
  ~async_client() {
    for (auto& t : threads_)
      t.join();
  }

 private:
  std::vector<std::thread> threads_;
};

int main() {
  async_client client;
  weft::executor ex(2);
  ex.run([&] {
    for (int i = 0; i < 3; ++i) {
      weft::spawn([&client, i] {
        auto guard = request_id.scoped("req-" + std::to_string(i));
        client.fetch("/item/" + std::to_string(i), weft::bind_context([](std::string reply) {
                       std::printf("[%s] %s\n", request_id.get().c_str(), reply.c_str());
                     }));
        client.fetch("/unbound", [](std::string reply) {
          std::printf("[%s] %s (callback not bound: a fresh thread context)\n",
                      request_id.get().c_str(), reply.c_str());
        });
      }).get();
    }
  });
}
