// Tests for plugins/mqtt/outbox.cpp: order, the window, release, requeue and
// the drop-oldest bound in count and in bytes.
#include "outbox.hpp"

#include <catch2/catch.hpp>

using hostlet::mqtt::Message;
using hostlet::mqtt::Outbox;

namespace {
Message msg(const std::string& payload, int qos = 1) { return Message{"t", payload, qos, false}; }
std::vector<std::string> send_all(Outbox& o) {
  std::vector<std::string> out;
  while (auto seq = o.next_to_send()) out.push_back(o.get(*seq)->payload);
  return out;
}
}  // namespace

TEST_CASE("outbox: messages go in the order they were accepted, at most a window at a time") {
  Outbox o(100, 1 << 20, 2);
  for (const char* p : {"a", "b", "c"}) CHECK(o.push(msg(p)) == 0);
  auto first = o.next_to_send();
  auto second = o.next_to_send();
  REQUIRE(first);
  REQUIRE(second);
  CHECK(o.get(*first)->payload == "a");
  CHECK(o.get(*second)->payload == "b");
  CHECK_FALSE(o.next_to_send());  // the window is full
  CHECK(o.in_flight() == 2);
  CHECK(o.release(*first));
  CHECK_FALSE(o.release(*first));  // once
  auto third = o.next_to_send();
  REQUIRE(third);
  CHECK(o.get(*third)->payload == "c");
  CHECK(o.size() == 2);
  CHECK(o.released() == 1);
}

TEST_CASE("outbox: a lost connection sends the unacknowledged messages again, oldest first") {
  Outbox o(100, 1 << 20, 10);
  for (const char* p : {"a", "b", "c", "d"}) o.push(msg(p));
  auto a = o.next_to_send();
  auto b = o.next_to_send();
  REQUIRE(a);
  REQUIRE(b);
  CHECK(o.release(*b));  // acknowledged out of order: only a is still owed
  o.requeue_in_flight();
  CHECK(o.in_flight() == 0);
  CHECK(send_all(o) == std::vector<std::string>{"a", "c", "d"});
  CHECK_FALSE(o.release(*b));
}

TEST_CASE("outbox: when full the oldest waiting messages are dropped and counted exactly") {
  Outbox o(3, 1 << 20, 1);
  for (const char* p : {"1", "2", "3"}) CHECK(o.push(msg(p)) == 0);
  auto inflight = o.next_to_send();  // "1" is with the broker: never dropped
  REQUIRE(inflight);
  CHECK(o.push(msg("4")) == 1);  // drops "2"
  CHECK(o.push(msg("5")) == 1);  // drops "3"
  CHECK(o.dropped() == 2);
  CHECK(o.size() == 3);
  o.requeue_in_flight();
  CHECK(send_all(o) == std::vector<std::string>{"1"});  // window of one
  o.requeue_in_flight();
  Outbox wide(3, 1 << 20, 10);
  for (const char* p : {"1", "2", "3", "4", "5", "6", "7"}) wide.push(msg(p));
  CHECK(wide.dropped() == 4);
  CHECK(send_all(wide) == std::vector<std::string>{"5", "6", "7"});
}

TEST_CASE("outbox: the byte bound drops as many old messages as the new one needs") {
  Outbox o(100, 10, 10);            // topic "t" is 1 byte: each message below is 1 + payload
  CHECK(o.push(msg("aaaa")) == 0);  // 5
  CHECK(o.push(msg("bbbb")) == 0);  // 10
  CHECK(o.bytes() == 10);
  CHECK(o.push(msg("cccccccc")) == 2);  // 9 bytes: both must go
  CHECK(o.bytes() == 9);
  CHECK(send_all(o) == std::vector<std::string>{"cccccccc"});
}

TEST_CASE("outbox: a message that cannot fit beside the in-flight ones is itself dropped") {
  Outbox o(2, 1 << 20, 2);
  o.push(msg("a"));
  o.push(msg("b"));
  REQUIRE(o.next_to_send());
  REQUIRE(o.next_to_send());
  CHECK(o.push(msg("c")) == 1);
  CHECK(o.dropped() == 1);
  CHECK(o.size() == 2);
  CHECK_FALSE(o.next_to_send());
}

TEST_CASE("outbox: its contents survive serialize and deserialize, in order; damaged bytes are refused") {
  Outbox o(10, 1 << 20, 2);
  o.push(Message{"a/b", "one", 1, false});
  o.push(Message{"c", std::string("t\0wo", 4), 0, true});
  o.push(Message{"d", "", 1, false});
  REQUIRE(o.next_to_send());  // in flight or not, everything goes across
  const std::string bytes = hostlet::mqtt::serialize(o.contents());
  std::vector<Message> back;
  REQUIRE(hostlet::mqtt::deserialize(bytes, back));
  REQUIRE(back.size() == 3);
  CHECK(back[0].topic == "a/b");
  CHECK(back[0].payload == "one");
  CHECK(back[1].payload == std::string("t\0wo", 4));
  CHECK(back[1].retain);
  CHECK(back[1].qos == 0);
  CHECK(back[2].payload.empty());
  std::vector<Message> none;
  CHECK(hostlet::mqtt::deserialize(hostlet::mqtt::serialize({}), none));
  CHECK(none.empty());
  std::vector<Message> junk;
  CHECK_FALSE(hostlet::mqtt::deserialize("HLMQOB2\n", junk));
  CHECK_FALSE(hostlet::mqtt::deserialize(bytes.substr(0, bytes.size() - 1), junk));
  std::string bad_qos = bytes;
  bad_qos[8] = 2;
  CHECK_FALSE(hostlet::mqtt::deserialize(bad_qos, junk));
}
