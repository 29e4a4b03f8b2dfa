// The outbox: every message the plugin has accepted for the broker, held
// until the broker has taken it (a QoS 1 message until its PUBACK, a QoS 0
// one until libmosquitto has written it), bounded in count and in bytes.
//
// Messages go to the broker in the order they were accepted. Those handed to
// the connection ("in flight", at most `window` of them) are always the oldest
// ones; when the connection is lost they become waiting again and are handed
// anew on the next connection (QoS 1 allows the duplicate; the plugin uses a
// fresh libmosquitto client per connection, so nothing else resends them).
// When a new message does not fit, the oldest waiting ones are dropped (and
// counted) until it does; in-flight ones are never dropped, so a message that
// cannot fit even then is itself dropped.
//
// Pure bookkeeping, no I/O: tests/mqtt/outbox_test.cpp drives it directly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hostlet::mqtt {

struct Message {
  std::string topic;
  std::string payload;
  int qos = 0;
  bool retain = false;
  size_t bytes() const { return topic.size() + payload.size(); }
};

class Outbox {
 public:
  Outbox(size_t max_messages, size_t max_bytes, size_t window)
      : max_messages_(max_messages), max_bytes_(max_bytes), window_(window) {}

  // Accepts m, dropping the oldest waiting messages as needed. Returns how
  // many messages were dropped (m itself counts when it could not fit).
  size_t push(Message m);

  // The next waiting message to hand to the connection, when the window has
  // room: its sequence number, now in flight. nullopt when none is waiting or
  // the window is full.
  std::optional<uint64_t> next_to_send();
  const Message* get(uint64_t seq) const;
  // The broker took message seq (PUBACK, or QoS 0 written): it leaves.
  // False when seq is not in flight (already released, or dropped).
  bool release(uint64_t seq);
  // The connection is gone: every in-flight message waits again, oldest first.
  void requeue_in_flight();

  // Every message held, in order (for the hand-over to the next version).
  std::vector<Message> contents() const;

  size_t size() const { return messages_.size(); }
  size_t bytes() const { return bytes_; }
  size_t in_flight() const { return in_flight_; }
  uint64_t dropped() const { return dropped_; }
  uint64_t released() const { return released_; }

 private:
  struct Slot {
    Message m;
    bool in_flight = false;
  };
  void erase(std::map<uint64_t, Slot>::iterator it);

  size_t max_messages_, max_bytes_, window_;
  std::map<uint64_t, Slot> messages_;  // by sequence number: the order of acceptance
  uint64_t next_seq_ = 1;
  uint64_t first_waiting_ = 1;  // messages below it are in flight (or gone)
  size_t bytes_ = 0, in_flight_ = 0;
  uint64_t dropped_ = 0, released_ = 0;
};

// The outbox as bytes, for the next version of the instance across a reload
// (kept in a memfd in the host's fd store): "HLMQOB1\n", then per message
// qos (1 byte), retain (1 byte), topic and payload lengths (4 bytes each,
// little-endian) and the bytes.
std::string serialize(const std::vector<Message>& messages);
// The messages, or false when `bytes` is not what serialize writes.
bool deserialize(std::string_view bytes, std::vector<Message>& out);

}  // namespace hostlet::mqtt
