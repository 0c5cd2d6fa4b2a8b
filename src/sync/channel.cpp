// channel.cpp: the untyped part of weft::channel -- closing, and the error of a closed channel.
#include <weft/channel.hpp>

#include <weft/detail/assert.hpp>
#include <weft/error.hpp>

namespace weft::detail {

channel_base::channel_base(std::size_t capacity, std::string name)
    : capacity_(capacity), name_(std::move(name)) {}

channel_base::~channel_base() {
  WEFT_ASSERT(receivers_.empty() && senders_.empty(),
              "a weft::channel was destroyed while fibers or threads wait on it");
}

void channel_base::close() noexcept {
  wake_later woken;  // after the lock: a woken waiter may destroy the channel
  std::lock_guard<spinlock> g(lock_);
  if (closed_) return;
  closed_ = true;
  // Receivers wait only while nothing is buffered: they all get nullopt. Senders wait only
  // while the buffer is full (or, unbuffered, for a receiver): their values are not delivered.
  for (wait_list* q : {&receivers_, &senders_}) {
    while (wait_node* n = q->claim()) {
      n->closed = true;
      woken.add(n);
    }
  }
}

bool channel_base::closed() const noexcept {
  std::lock_guard<spinlock> g(lock_);
  return closed_;
}

void channel_base::throw_closed() const {
  throw error(errc::channel_closed, name_.empty() ? std::string("weft: send on a closed channel")
                                                  : "weft: send on closed channel '" + name_ + "'");
}

}  // namespace weft::detail
