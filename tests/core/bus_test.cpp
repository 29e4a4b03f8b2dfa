// Tests for core/bus.cpp in isolation: the event bus (batches, bounds,
// subscriptions) and the reload support of the bus and the action registry
// (park/hold/release of subscriptions, held calls with their bound and
// timeout). A real libuv loop; no plugin instances (owners are plain tags).
#include <catch2/catch.hpp>
#include <uv.h>

#include <cerrno>
#include <string>
#include <vector>

#include "bus.hpp"

using hostlet::ActionRegistry;
using hostlet::ActionResult;
using hostlet::Event;
using hostlet::EventBus;

namespace {

struct Loop {
  uv_loop_t loop{};
  Loop() { REQUIRE(uv_loop_init(&loop) == 0); }
  ~Loop() {
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);
  }
  void run() { uv_run(&loop, UV_RUN_DEFAULT); }
  // Runs the loop for about `ms` (the registry's timer is unref'd: it alone
  // would not keep the loop running).
  void run_for(uint64_t ms) {
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    uv_timer_start(&t, [](uv_timer_t*) {}, ms, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_close(reinterpret_cast<uv_handle_t*>(&t), nullptr);
    uv_run(&loop, UV_RUN_DEFAULT);
  }
};

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

TEST_CASE("actions: calls to a held instance wait and run after release; unknown ones then fail") {
  Loop l;
  ActionRegistry reg(&l.loop, 30000);
  std::vector<ActionResult> results;
  reg.hold("w", 10);
  for (int i = 0; i < 3; i++)
    CHECK(reg.call("w.gone", {{"i", std::to_string(i)}}, [&](ActionResult&& r) { results.push_back(std::move(r)); }) == 0);
  CHECK(reg.held() == 3);
  CHECK(results.empty());
  CHECK(reg.call("other.thing", {}, [&](ActionResult&&) {}) == -ENOENT);  // not held: unknown at once
  CHECK(reg.release("w") == 3);
  REQUIRE(results.size() == 3);
  for (const auto& r : results) {
    CHECK_FALSE(r.ok);
    CHECK(r.error == "no such action 'w.gone' (after the reload of 'w')");
  }
  CHECK(reg.held() == 0);
  reg.close(nullptr);
  l.run();
}

TEST_CASE("actions: held calls are bounded and time out with the action timeout") {
  Loop l;
  ActionRegistry reg(&l.loop, 20);  // 20 ms action timeout
  std::vector<ActionResult> results;
  reg.hold("w", 2);
  for (int i = 0; i < 3; i++) reg.call("w.x", {}, [&](ActionResult&& r) { results.push_back(std::move(r)); });
  REQUIRE(results.size() == 1);  // the third: refused at once
  CHECK(results[0].error == "instance 'w' is reloading and already holds 2 calls; try again");
  l.run_for(200);  // the registry's timer fires (20 ms) and stops once nothing waits
  REQUIRE(results.size() == 3);
  CHECK(results[1].error == "action timed out after 20 ms while 'w' was reloading");
  CHECK(results[2].error == "action timed out after 20 ms while 'w' was reloading");
  CHECK(reg.release("w") == 0);
  reg.close(nullptr);
  l.run();
}

TEST_CASE("actions: a staged owner's registrations wait for commit; names taken by then are refused") {
  Loop l;
  ActionRegistry reg(&l.loop, 1000);
  auto fn = [](void*, hostlet_call*, const hostlet_attr*, size_t) { return 0; };
  auto* old_owner = reinterpret_cast<hostlet::Instance*>(0x1000);
  auto* new_owner = reinterpret_cast<hostlet::Instance*>(0x2000);
  REQUIRE(reg.add_plugin("w.a", old_owner, fn, nullptr) == 0);
  REQUIRE(reg.add_plugin("w.keep", old_owner, fn, nullptr) == 0);
  reg.stage(new_owner);
  CHECK(reg.add_plugin("w.a", new_owner, fn, nullptr) == 0);  // same name as the old one: fine while staged
  CHECK(reg.add_plugin("w.a", new_owner, fn, nullptr) == -EEXIST);
  CHECK(reg.add_plugin("w.b", new_owner, fn, nullptr) == 0);
  CHECK(reg.add_plugin("bad..name", new_owner, fn, nullptr) == -EINVAL);
  CHECK(reg.find("w.a")->owner == old_owner);
  CHECK_FALSE(reg.exists("w.b"));
  reg.remove_owner(old_owner);
  REQUIRE(reg.add_plugin("w.b", old_owner, fn, nullptr) == 0);  // taken by someone else meanwhile
  auto refused = reg.commit(new_owner);
  CHECK(refused == std::vector<std::string>{"w.b"});
  CHECK(reg.find("w.a")->owner == new_owner);
  CHECK(reg.find("w.b")->owner == old_owner);
  CHECK_FALSE(reg.exists("w.keep"));
  // After commit the owner registers directly again.
  CHECK(reg.add_plugin("w.c", new_owner, fn, nullptr) == 0);
  CHECK(reg.exists("w.c"));
  reg.stage(old_owner);
  CHECK(reg.add_plugin("w.z", old_owner, fn, nullptr) == 0);
  reg.discard(old_owner);
  CHECK_FALSE(reg.exists("w.z"));
  reg.close(nullptr);
  l.run();
}
