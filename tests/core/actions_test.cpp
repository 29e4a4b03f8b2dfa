// Tests for core/actions.cpp: calls, answers, timeouts, and the reload
// support (staged registrations, held calls with their bound and timeout).
// A real libuv loop; owners are a small ActionOwner that runs handlers as an
// instance would.
#include <catch2/catch.hpp>
#include <uv.h>

#include <cerrno>
#include <string>
#include <vector>

#include "actions.hpp"
#include "support/loop.hpp"

using hostlet::ActionRegistry;
using hostlet::ActionResult;
using Loop = hostlet::test::TestLoop;

namespace {

using hostlet::CallOptions;

// Keeps the calls it gets, to answer them later.
int keep_call(void* arg, hostlet_call* c, const hostlet_attr*, size_t) {
  static_cast<std::vector<hostlet_call*>*>(arg)->push_back(c);
  return 0;
}

// What an Instance is to the registry, without a plugin behind it.
class Owner final : public hostlet::ActionOwner {
 public:
  explicit Owner(std::string name) : name_(std::move(name)) {}
  const std::string& name() const override { return name_; }
  bool accepting_calls() const override { return accepting; }
  int invoke_action(hostlet_action_fn fn, void* arg, hostlet_call* call, const hostlet_attr* attrs,
                    size_t n) override {
    invoked++;
    return fn(arg, call, attrs, n);
  }
  void log_error(const char* message) override { errors.emplace_back(message); }
  // Backpressure: `room` stands for the lane; want_room() is recorded.
  bool has_room() const override { return room; }
  void want_room() override { wanted++; }
  std::string limits_text() const override { return "max_inflight 1, max_queue 0"; }
  bool accepting = true;
  bool room = true;
  int wanted = 0;
  int invoked = 0;
  std::vector<std::string> errors;

 private:
  std::string name_;
};

}  // namespace

TEST_CASE("actions: a handler answers later, exactly once; invalid JSON data becomes an error") {
  Loop l;
  ActionRegistry reg(&l.loop, 30000);
  Owner w("w");
  std::vector<hostlet_call*> calls;
  auto keep = [](void* arg, hostlet_call* c, const hostlet_attr*, size_t) {
    static_cast<std::vector<hostlet_call*>*>(arg)->push_back(c);
    return 0;
  };
  REQUIRE(reg.add_plugin("w.later", &w, keep, &calls) == 0);
  std::vector<ActionResult> results;
  auto collect = [&](ActionResult&& r) { results.push_back(std::move(r)); };
  REQUIRE(reg.call("w.later", {{"k", "v"}}, collect) == 0);
  REQUIRE(reg.call("w.later", {}, collect) == 0);
  REQUIRE(calls.size() == 2);
  CHECK(std::string(ActionRegistry::call_attr(calls[0], "k")) == "v");
  CHECK(ActionRegistry::call_attr(calls[0], "missing") == nullptr);
  CHECK(reg.pending_for(&w) == 2);
  CHECK(results.empty());
  hostlet_attr out[] = {{"a", "1"}};
  CHECK(ActionRegistry::reply_ok(calls[0], out, 1, "{\n\"x\": [1,\r\n2]}") == 0);
  CHECK(ActionRegistry::reply_ok(calls[1], nullptr, 0, "{not json") == -EINVAL);
  REQUIRE(results.size() == 2);
  CHECK(results[0].ok);
  CHECK(results[0].attrs == hostlet::Attrs{{"a", "1"}});
  CHECK(results[0].data_json == "{ \"x\": [1,  2]}");  // on one line, value unchanged
  CHECK_FALSE(results[1].ok);
  CHECK(results[1].error == "the plugin answered with invalid JSON data");
  CHECK(w.errors == std::vector<std::string>{"action answered with invalid JSON data"});
  CHECK(reg.pending_for(&w) == 0);
  reg.close(nullptr);
  l.run();
}

TEST_CASE("actions: a refused call, a stopping owner and a timed-out call each answer the caller once") {
  Loop l;
  ActionRegistry reg(&l.loop, 20);
  Owner w("w");
  hostlet_call* kept = nullptr;
  REQUIRE(reg.add_plugin("w.refuse", &w, [](void*, hostlet_call*, const hostlet_attr*, size_t) { return -EPERM; },
                         nullptr) == 0);
  REQUIRE(reg.add_plugin("w.keep", &w,
                         [](void* arg, hostlet_call* c, const hostlet_attr*, size_t) {
                           *static_cast<hostlet_call**>(arg) = c;
                           return 0;
                         },
                         &kept) == 0);
  std::vector<ActionResult> results;
  auto collect = [&](ActionResult&& r) { results.push_back(std::move(r)); };
  REQUIRE(reg.call("w.refuse", {}, collect) == 0);
  REQUIRE(results.size() == 1);
  CHECK(results[0].error == std::string("action refused: ") + strerror(EPERM));
  REQUIRE(reg.call("w.keep", {}, collect) == 0);
  l.run_for(200);  // the 20 ms timeout passes
  REQUIRE(results.size() == 2);
  CHECK(results[1].error == "action timed out after 20 ms without an answer from 'w'");
  // The plugin's late answer goes nowhere (the caller has its answer) and frees the call.
  CHECK(ActionRegistry::reply_error(kept, "late") == 0);
  CHECK(results.size() == 2);
  w.accepting = false;
  int before = w.invoked;
  REQUIRE(reg.call("w.keep", {}, collect) == 0);
  REQUIRE(results.size() == 3);
  CHECK(results[2].error == "instance 'w' is not running");
  CHECK(w.invoked == before);
  CHECK(reg.call("w.nothing", {}, collect) == -ENOENT);
  reg.close(nullptr);
  l.run();
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
  Owner old_instance("w"), new_instance("w");
  Owner* old_owner = &old_instance;
  Owner* new_owner = &new_instance;
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

TEST_CASE("actions: a call to a full lane waits in order and starts when there is room; other owners flow") {
  Loop l;
  ActionRegistry reg(&l.loop, 30000, 10000);
  Owner slow("slow"), fast("fast");
  std::vector<hostlet_call*> slow_calls, fast_calls;
  REQUIRE(reg.add_plugin("slow.work", &slow, keep_call, &slow_calls) == 0);
  REQUIRE(reg.add_plugin("fast.work", &fast, keep_call, &fast_calls) == 0);
  std::vector<std::string> answered;
  auto named = [&](std::string who) { return [&answered, who](ActionResult&& r) { answered.push_back(who + (r.ok ? ":ok" : ":" + r.error)); }; };
  slow.room = false;
  for (int i = 0; i < 3; i++) REQUIRE(reg.call("slow.work", {{"i", std::to_string(i)}}, named("s" + std::to_string(i))) == 0);
  CHECK(slow.invoked == 0);
  CHECK(reg.waiting() == 3);
  CHECK(reg.waiting_for(&slow) == 3);
  CHECK(slow.wanted == 3);
  CHECK(reg.wait_stats().waited == 3);
  // Another owner is not behind them.
  REQUIRE(reg.call("fast.work", {}, named("f")) == 0);
  REQUIRE(fast_calls.size() == 1);
  CHECK(ActionRegistry::reply_ok(fast_calls[0], nullptr, 0, nullptr) == 0);
  CHECK(answered == std::vector<std::string>{"f:ok"});
  // Room again: the waiting calls start in arrival order, as long as there is room.
  slow.room = true;
  reg.room_available(&slow);
  REQUIRE(slow_calls.size() == 3);
  for (int i = 0; i < 3; i++) CHECK(std::string(ActionRegistry::call_attr(slow_calls[i], "i")) == std::to_string(i));
  CHECK(reg.waiting() == 0);
  for (auto* c : slow_calls) ActionRegistry::reply_ok(c, nullptr, 0, nullptr);
  CHECK(answered == std::vector<std::string>{"f:ok", "s0:ok", "s1:ok", "s2:ok"});
  // While calls wait, a new one goes behind them even if the lane has room by then.
  slow.room = false;
  reg.call("slow.work", {{"i", "a"}}, named("a"));
  slow.room = true;
  reg.call("slow.work", {{"i", "b"}}, named("b"));
  CHECK(slow_calls.size() == 3);
  CHECK(reg.waiting() == 2);
  reg.room_available(&slow);
  REQUIRE(slow_calls.size() == 5);
  CHECK(std::string(ActionRegistry::call_attr(slow_calls[3], "i")) == "a");
  CHECK(std::string(ActionRegistry::call_attr(slow_calls[4], "i")) == "b");
  ActionRegistry::reply_ok(slow_calls[3], nullptr, 0, nullptr);
  ActionRegistry::reply_ok(slow_calls[4], nullptr, 0, nullptr);
  reg.close(nullptr);
  l.run();
}

TEST_CASE("actions: a full lane answers EAGAIN at once to a call that may not wait, and after the wait to one that may") {
  Loop l;
  ActionRegistry reg(&l.loop, 30000, 10000);
  Owner slow("slow");
  std::vector<hostlet_call*> calls;
  REQUIRE(reg.add_plugin("slow.work", &slow, keep_call, &calls) == 0);
  std::vector<ActionResult> results;
  auto collect = [&](ActionResult&& r) { results.push_back(std::move(r)); };
  slow.room = false;
  REQUIRE(reg.call("slow.work", {}, collect, CallOptions{0}) == 0);
  REQUIRE(results.size() == 1);
  CHECK_FALSE(results[0].ok);
  CHECK(results[0].code == -EAGAIN);
  CHECK(results[0].error ==
        "slow.work did not start: the offload lane of 'slow' (max_inflight 1, max_queue 0) is full (EAGAIN; the call "
        "asked not to wait)");
  CHECK(reg.wait_stats().refused == 1);
  REQUIRE(reg.call("slow.work", {}, collect, CallOptions{30}) == 0);
  CHECK(results.size() == 1);
  l.run_for(300);  // the 30 ms wait passes: the wait timer answers
  REQUIRE(results.size() == 2);
  CHECK(results[1].code == -EAGAIN);
  CHECK(results[1].error.rfind("slow.work did not start: the offload lane of 'slow' (max_inflight 1, max_queue 0) was full for ", 0) == 0);
  CHECK(results[1].error.find(" ms (wait 30 ms, agent.action_wait or the rule's)") != std::string::npos);
  CHECK(reg.waiting() == 0);
  CHECK(reg.wait_stats().expired == 1);
  CHECK(calls.empty());  // none of them ever reached the plugin
  reg.close(nullptr);
  l.run();
}

TEST_CASE("actions: a handler that answers -EAGAIN is called again first when there is room") {
  Loop l;
  ActionRegistry reg(&l.loop, 30000, 10000);
  Owner w("w");
  struct Busy {
    int refusals = 1;
    std::vector<hostlet_call*> calls;
  } busy;
  REQUIRE(reg.add_plugin("w.x", &w,
                         [](void* arg, hostlet_call* c, const hostlet_attr*, size_t) {
                           auto* b = static_cast<Busy*>(arg);
                           if (b->refusals > 0) {
                             b->refusals--;
                             return -EAGAIN;
                           }
                           b->calls.push_back(c);
                           return 0;
                         },
                         &busy) == 0);
  std::vector<std::string> order;
  reg.call("w.x", {{"n", "1"}}, [&](ActionResult&& r) { order.push_back(r.ok ? "1" : r.error); });
  CHECK(w.invoked == 1);
  CHECK(reg.waiting() == 1);
  w.room = false;
  reg.call("w.x", {{"n", "2"}}, [&](ActionResult&& r) { order.push_back(r.ok ? "2" : r.error); });
  CHECK(reg.waiting() == 2);
  w.room = true;
  reg.room_available(&w);
  REQUIRE(busy.calls.size() == 2);
  CHECK(std::string(ActionRegistry::call_attr(busy.calls[0], "n")) == "1");  // the refused one first
  for (auto* c : busy.calls) ActionRegistry::reply_ok(c, nullptr, 0, nullptr);
  CHECK(order == std::vector<std::string>{"1", "2"});
  reg.close(nullptr);
  l.run();
}

TEST_CASE("actions: waiting calls are bounded, fail when their owner stops, and move to the successor at a reload") {
  Loop l;
  ActionRegistry reg(&l.loop, 30000, 10000, 2);  // at most 2 waiting calls
  Owner old_owner("w"), next_owner("w");
  std::vector<hostlet_call*> old_calls, next_calls;
  REQUIRE(reg.add_plugin("w.x", &old_owner, keep_call, &old_calls) == 0);
  std::vector<ActionResult> results;
  auto collect = [&](ActionResult&& r) { results.push_back(std::move(r)); };
  old_owner.room = false;
  reg.call("w.x", {}, collect);
  reg.call("w.x", {}, collect);
  reg.call("w.x", {}, collect);  // a third: beyond the bound
  REQUIRE(results.size() == 1);
  CHECK(results[0].code == -EAGAIN);
  CHECK(results[0].error.find("is full and 2 calls already wait for lanes (EAGAIN)") != std::string::npos);
  // A reload holds them with the instance's other calls and runs them on its successor.
  reg.hold("w", 10);
  CHECK(reg.waiting() == 0);
  CHECK(reg.held() == 2);
  reg.remove_owner(&old_owner);
  REQUIRE(reg.add_plugin("w.x", &next_owner, keep_call, &next_calls) == 0);
  CHECK(reg.release("w") == 2);
  CHECK(next_calls.size() == 2);
  CHECK(old_calls.empty());
  for (auto* c : next_calls) ActionRegistry::reply_ok(c, nullptr, 0, nullptr);
  REQUIRE(results.size() == 3);
  CHECK(results[1].ok);
  CHECK(results[2].ok);
  // An owner that stops: its waiting calls are answered with the reason.
  next_owner.room = false;
  reg.call("w.x", {}, collect);
  reg.fail_owner_calls(&next_owner, "instance 'w' is stopping");
  REQUIRE(results.size() == 4);
  CHECK(results[3].error == "instance 'w' is stopping");
  CHECK(reg.waiting() == 0);
  // And the agent stopping answers what still waits.
  reg.call("w.x", {}, collect);
  reg.close(nullptr);
  REQUIRE(results.size() == 5);
  CHECK(results[4].error == "w.x did not start: the agent is stopping");
  l.run();
}
