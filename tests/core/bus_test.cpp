// Tests for core/bus.cpp in isolation: the event bus (batches, bounds,
// subscriptions) and its reload support (park/hold/release of
// subscriptions). A real libuv loop; no plugin instances (owners are plain tags).
#include <catch2/catch.hpp>
#include <uv.h>

#include <cerrno>
#include <string>
#include <vector>

#include "bus.hpp"
#include "support/loop.hpp"

using hostlet::Event;
using hostlet::EventBus;

namespace {

using Loop = hostlet::test::TestLoop;

Event ev(const std::string& type, const std::string& n = "") {
  Event e;
  e.source = "test";
  e.type = type;
  if (!n.empty()) e.attrs.emplace_back("n", n);
  return e;
}

// Dispatches what is queued: the bus stops its idle handle once empty.
struct Bus {
  Loop& l;
  EventBus bus;
  Bus(Loop& loop, size_t capacity = 1024, unsigned batch = 16) : l(loop), bus(&loop.loop, capacity, batch) {}
  ~Bus() {
    bus.close(nullptr);
    uv_run(&l.loop, UV_RUN_DEFAULT);  // the close callback runs while the bus exists
  }
  void pump() { uv_run(&l.loop, UV_RUN_DEFAULT); }
};

std::vector<std::string> seen_n(const std::vector<Event>& v) {
  std::vector<std::string> out;
  for (const auto& e : v) out.push_back(e.attrs.empty() ? "" : e.attrs[0].second);
  return out;
}

}  // namespace

TEST_CASE("bus: exact and glob subscriptions get matching events in order; a full queue says EAGAIN") {
  Loop l;
  Bus b(l, 4);
  std::vector<Event> exact, glob;
  b.bus.subscribe("vm.start", [&](const Event& e) { exact.push_back(e); });
  b.bus.subscribe("vm.*", [&](const Event& e) { glob.push_back(e); });
  for (int i = 0; i < 4; i++) REQUIRE(b.bus.publish(ev(i % 2 ? "vm.stop" : "vm.start", std::to_string(i))) == 0);
  CHECK(b.bus.publish(ev("vm.start", "overflow")) == -EAGAIN);
  b.pump();
  CHECK(seen_n(exact) == std::vector<std::string>{"0", "2"});
  CHECK(seen_n(glob) == std::vector<std::string>{"0", "1", "2", "3"});
  CHECK(b.bus.stats().dropped == 1);
  CHECK(b.bus.stats().dispatched == 4);
  CHECK(b.bus.subscribe("[unclosed", [](const Event&) {}) == nullptr);
}

TEST_CASE("bus: the backlog downstream counts against the capacity, except for the core's own events") {
  Loop l;
  Bus b(l, 4);
  size_t backlog = 3;
  b.bus.set_backlog([&] { return backlog; });
  REQUIRE(b.bus.publish(ev("vm.start", "1")) == 0);  // 1 queued + 3 waiting downstream = 4
  CHECK(b.bus.publish(ev("vm.start", "2")) == -EAGAIN);
  CHECK(b.bus.stats().backlog == 3);
  Event own = ev("action.done");
  own.source = "hostlet";  // a result: it is what drains the backlog
  CHECK(b.bus.publish(std::move(own)) == 0);
  backlog = 0;
  CHECK(b.bus.publish(ev("vm.start", "3")) == 0);
  b.pump();
  CHECK(b.bus.stats().dispatched == 3);
  CHECK(b.bus.stats().dropped == 1);
}

TEST_CASE("bus: a parked owner gets nothing, also on subscriptions made while parked; release unparks") {
  Loop l;
  Bus b(l);
  int owner = 0;
  std::vector<Event> got;
  b.bus.park(&owner);
  b.bus.subscribe("x", [&](const Event& e) { got.push_back(e); }, &owner);
  b.bus.publish(ev("x", "1"));
  b.pump();
  CHECK(got.empty());
  CHECK(b.bus.release(&owner, &owner) == 0);  // parked, not held: nothing kept
  b.bus.publish(ev("x", "2"));
  b.pump();
  CHECK(seen_n(got) == std::vector<std::string>{"2"});
}

TEST_CASE("bus: a hold keeps what matched the old owner and hands it, in order, to the new one") {
  Loop l;
  Bus b(l);
  int old_owner = 0, new_owner = 0;
  std::vector<Event> old_got, new_got, other_got;
  b.bus.subscribe("job.*", [&](const Event& e) { old_got.push_back(e); }, &old_owner);
  b.bus.subscribe("job.run", [&](const Event& e) { old_got.push_back(e); }, &old_owner);  // overlaps: kept once
  b.bus.subscribe("job.*", [&](const Event& e) { other_got.push_back(e); });            // not involved
  b.bus.park(&new_owner);
  b.bus.subscribe("job.run", [&](const Event& e) { new_got.push_back(e); }, &new_owner);

  b.bus.hold(&old_owner);
  b.bus.publish(ev("job.run", "1"));
  b.bus.publish(ev("other", "x"));
  b.bus.publish(ev("job.stop", "2"));  // the new owner does not subscribe to it: not delivered to it
  b.bus.publish(ev("job.run", "3"));
  b.pump();
  CHECK(old_got.empty());
  CHECK(new_got.empty());
  CHECK(other_got.size() == 3);  // others never wait

  CHECK(b.bus.release(&old_owner, &new_owner) == 3);
  CHECK(seen_n(new_got) == std::vector<std::string>{"1", "3"});
  CHECK(old_got.empty());
  b.bus.publish(ev("job.run", "4"));  // live now, and the old owner is no longer held
  b.pump();
  CHECK(seen_n(new_got) == std::vector<std::string>{"1", "3", "4"});
}

TEST_CASE("bus: an aborted swap gives the kept events back to the old owner; a discarded one drops them") {
  Loop l;
  Bus b(l);
  int owner = 0;
  std::vector<Event> got;
  b.bus.subscribe("e", [&](const Event& e) { got.push_back(e); }, &owner);
  b.bus.hold(&owner);
  b.bus.publish(ev("e", "1"));
  b.pump();
  CHECK(got.empty());
  CHECK(b.bus.release(&owner, &owner) == 1);
  CHECK(seen_n(got) == std::vector<std::string>{"1"});

  b.bus.hold(&owner);
  b.bus.publish(ev("e", "2"));
  b.pump();
  CHECK(b.bus.release(&owner, nullptr) == 1);
  b.bus.publish(ev("e", "3"));
  b.pump();
  CHECK(seen_n(got) == std::vector<std::string>{"1", "3"});
}

TEST_CASE("bus: a hold is bounded by the queue capacity; beyond it events count as dropped") {
  Loop l;
  Bus b(l, 16, 4);
  int owner = 0, next = 0;
  int got = 0;
  b.bus.subscribe("e", [](const Event&) {}, &owner);
  b.bus.subscribe("e", [&](const Event&) { got++; }, &next);
  b.bus.park(&next);
  b.bus.hold(&owner);
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < 10; i++) REQUIRE(b.bus.publish(ev("e")) == 0);
    b.pump();
  }
  CHECK(b.bus.stats().dropped == 30 - 16);
  CHECK(b.bus.release(&owner, &next) == 16);
  CHECK(got == 16);
}
