// logging: every spdlog line carries the request id of the fiber that logs it.
//
// A custom spdlog flag (%*, request_log.hpp) reads weft::context_var request_id; handlers log
// without passing the id around, across nested fibers and worker threads.
//
// Run: ./build/examples/logging
#include <memory>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include <weft/weft.hpp>

#include "request_log.hpp"

using example::request_id;

void check_stock(int item) {
  spdlog::info("checking stock of item {}", item);
  weft::this_fiber::sleep_for(std::chrono::milliseconds(5));
}

void handle(int order) {
  auto id = request_id.scoped("order-" + std::to_string(order));
  spdlog::info("received");
  weft::task_group items;
  for (int item = 0; item < 2; ++item)
    items.spawn(check_stock, order * 10 + item);
  items.wait();
  spdlog::info("done");
}

int main() {
  example::log_with_request_id("[%H:%M:%S.%e] [thread %t] [%*] %v");
  spdlog::info("starting");  // outside any request: the default "-"
  weft::executor ex(2);
  ex.run([] {
    weft::task_group orders;
    for (int order = 1; order <= 3; ++order)
      orders.spawn(handle, order);
  });
}
