// request_id: the Python contextvars/asyncio request-id example, in C++ with weft.
//
// Four requests run concurrently as fibers. Each sets its own request id once; a nested
// function reads it with request_id.get() -- no parameter passed, no thread_local, and
// still right after the fiber was suspended and resumed, possibly on another thread.
//
// Run: ./build/examples/request_id
#include <cstdio>
#include <string>
#include <vector>

#include <weft/weft.hpp>

weft::context_var<std::string> request_id("request_id");

void inner() {
  weft::this_fiber::sleep_for(std::chrono::milliseconds(10));  // like `await asyncio.sleep`
  std::printf("inner sees %s\n", request_id.get().c_str());
}

void outer(int i) {
  (void)request_id.set("req-" + std::to_string(i));
  inner();
}

int main() {
  weft::executor ex(2);
  ex.run([] {
    std::vector<weft::task<void>> requests;
    for (int i = 0; i < 4; ++i)
      requests.push_back(weft::spawn(outer, i));
    for (auto& r : requests)
      r.get();  // like asyncio.gather
  });
}
