// See outbox.hpp.
#include "outbox.hpp"

namespace hostlet::mqtt {

void Outbox::erase(std::map<uint64_t, Slot>::iterator it) {
  bytes_ -= it->second.m.bytes();
  if (it->second.in_flight) --in_flight_;
  messages_.erase(it);
}

size_t Outbox::push(Message m) {
  size_t dropped = 0;
  const size_t need = m.bytes();
  while (messages_.size() + 1 > max_messages_ || bytes_ + need > max_bytes_) {
    auto oldest_waiting = messages_.lower_bound(first_waiting_);
    if (oldest_waiting == messages_.end()) {  // only in-flight ones left: m cannot fit
      ++dropped_;
      return dropped + 1;
    }
    erase(oldest_waiting);
    ++dropped;
    ++dropped_;
  }
  bytes_ += need;
  messages_.emplace(next_seq_++, Slot{std::move(m), false});
  return dropped;
}

std::optional<uint64_t> Outbox::next_to_send() {
  if (in_flight_ >= window_) return std::nullopt;
  auto it = messages_.lower_bound(first_waiting_);
  if (it == messages_.end()) return std::nullopt;
  it->second.in_flight = true;
  ++in_flight_;
  first_waiting_ = it->first + 1;
  return it->first;
}

const Message* Outbox::get(uint64_t seq) const {
  auto it = messages_.find(seq);
  return it == messages_.end() ? nullptr : &it->second.m;
}

bool Outbox::release(uint64_t seq) {
  auto it = messages_.find(seq);
  if (it == messages_.end() || !it->second.in_flight) return false;
  erase(it);
  ++released_;
  return true;
}

void Outbox::requeue_in_flight() {
  for (auto& [seq, slot] : messages_) slot.in_flight = false;
  in_flight_ = 0;
  first_waiting_ = messages_.empty() ? next_seq_ : messages_.begin()->first;
}

}  // namespace hostlet::mqtt
