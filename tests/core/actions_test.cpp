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
  bool accepting = true;
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
