// consumer: a program built against weft from outside weft's tree (see tests/consumer/run).
#include <cstdio>
#include <string>

#include <weft/weft.hpp>

weft::context_var<std::string> request_id("request_id");

int main() {
  weft::executor ex(2);
  auto id = request_id.scoped("outside");
  const std::string seen = ex.run([] {
    weft::task_group group;
    std::string child;
    group.spawn([&] { child = request_id.get(); });
    group.wait();
    return child;
  });
  std::printf("consumer: child saw '%s'\n", seen.c_str());
  return seen == "outside" ? 0 : 1;
}
