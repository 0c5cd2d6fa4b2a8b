// logging: every spdlog line carries the request id of the fiber that logs it.
//
// A custom spdlog flag (%*) reads weft::context_var request_id; handlers log without
// passing the id around, across nested fibers and worker threads.
//
// Run: ./build/examples/logging
#include <memory>
#include <string>
#include <vector>

#include <spdlog/pattern_formatter.h>
#include <spdlog/spdlog.h>

#include <weft/weft.hpp>

weft::context_var<std::string> request_id("request_id", "-");

// request_id_flag formats %* as the calling fiber's current request id.
class request_id_flag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    const std::string& id = request_id.get();
    dest.append(id.data(), id.data() + id.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<request_id_flag>();
  }
};

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
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  formatter->add_flag<request_id_flag>('*').set_pattern("[%H:%M:%S.%e] [thread %t] [%*] %v");
  spdlog::set_formatter(std::move(formatter));
  spdlog::info("starting");  // outside any request: the default "-"
  weft::executor ex(2);
  ex.run([] {
    weft::task_group orders;
    for (int order = 1; order <= 3; ++order)
      orders.spawn(handle, order);
  });
}
