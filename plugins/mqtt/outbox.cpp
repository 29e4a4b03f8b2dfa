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

std::vector<Message> Outbox::contents() const {
  std::vector<Message> out;
  out.reserve(messages_.size());
  for (const auto& [seq, slot] : messages_) out.push_back(slot.m);
  return out;
}

namespace {
constexpr std::string_view kMagic = "HLMQOB1\n";
void put32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint32_t get32(std::string_view b, size_t at) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<unsigned char>(b[at + i])) << (8 * i);
  return v;
}
}  // namespace

std::string serialize(const std::vector<Message>& messages) {
  std::string out(kMagic);
  for (const Message& m : messages) {
    out.push_back(static_cast<char>(m.qos));
    out.push_back(m.retain ? 1 : 0);
    put32(out, static_cast<uint32_t>(m.topic.size()));
    put32(out, static_cast<uint32_t>(m.payload.size()));
    out += m.topic;
    out += m.payload;
  }
  return out;
}

bool deserialize(std::string_view b, std::vector<Message>& out) {
  if (b.substr(0, kMagic.size()) != kMagic) return false;
  size_t at = kMagic.size();
  while (at < b.size()) {
    if (b.size() - at < 10) return false;
    Message m;
    m.qos = b[at];
    m.retain = b[at + 1] != 0;
    if ((m.qos != 0 && m.qos != 1) || static_cast<unsigned char>(b[at + 1]) > 1) return false;
    const size_t tl = get32(b, at + 2), pl = get32(b, at + 6);
    at += 10;
    if (b.size() - at < tl || b.size() - at - tl < pl) return false;
    m.topic.assign(b.substr(at, tl));
    m.payload.assign(b.substr(at + tl, pl));
    at += tl + pl;
    out.push_back(std::move(m));
  }
  return true;
}

}  // namespace hostlet::mqtt
