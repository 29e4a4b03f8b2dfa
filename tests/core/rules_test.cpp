// Tests for core/rules.cpp: matching, templates, chains, the action.done and
// action.failed events, and debounce and rate limits timed by a test clock
// (time moves when the test says, so no test sleeps). A real loop, bus and
// action registry; the actions belong to a small ActionOwner.
#include <catch2/catch.hpp>

#include <cerrno>
#include <string>
#include <vector>

#include "actions.hpp"
#include "bus.hpp"
#include "rules.hpp"
#include "support/loop.hpp"

using namespace hostlet;

namespace {

class TestClock final : public Clock {
 public:
  uint64_t now_ns() const override { return now; }
  void advance_ms(uint64_t ms) { now += ms * 1000000ull; }
  uint64_t now = 1'000'000'000;
};

// Actions "t.ok" (answers with its attributes) and "t.fail" (fails), each
// call recorded.
class Target final : public ActionOwner {
 public:
  explicit Target(ActionRegistry& reg) {
    REQUIRE(reg.add_plugin("t.ok", this, &Target::ok, this) == 0);
    REQUIRE(reg.add_plugin("t.fail", this, &Target::fail, this) == 0);
  }
  const std::string& name() const override { return name_; }
  bool accepting_calls() const override { return true; }
  int invoke_action(hostlet_action_fn fn, void* arg, hostlet_call* call, const hostlet_attr* attrs,
                    size_t n) override {
    return fn(arg, call, attrs, n);
  }
  void log_error(const char*) override {}
  std::vector<std::pair<std::string, Attrs>> calls;

 private:
  static int ok(void* self, hostlet_call* c, const hostlet_attr* attrs, size_t n) {
    Attrs a;
    for (size_t i = 0; i < n; i++) a.emplace_back(attrs[i].key, attrs[i].value);
    static_cast<Target*>(self)->calls.emplace_back("t.ok", a);
    ActionRegistry::reply_ok(c, attrs, n, nullptr);
    return 0;
  }
  static int fail(void* self, hostlet_call* c, const hostlet_attr*, size_t) {
    static_cast<Target*>(self)->calls.emplace_back("t.fail", Attrs{});
    ActionRegistry::reply_error(c, "refused on purpose");
    return 0;
  }
  std::string name_ = "t";
};

struct Rig {
  test::TestLoop l;
  EventBus bus{&l.loop, 1024, 64};
  ActionRegistry actions{&l.loop, 30000};
  Target target{actions};
  TestClock clock;
  RuleEngine rules{bus, actions, clock};
  std::vector<Event> results;  // action.done / action.failed
  EventBus::Sub* watch = bus.subscribe("action.*", [this](const Event& e) { results.push_back(e); });

  ~Rig() {
    rules.deactivate();
    bus.unsubscribe(watch);
    bus.close(nullptr);
    actions.close(nullptr);
    l.run();
  }
  void load(std::vector<RuleSection> rs) {
    ConfigErrors errs;
    REQUIRE(rules.compile(rs, "r.yaml", errs));
    REQUIRE(rules.check_actions(errs));
    rules.activate();
  }
  void send(const std::string& type, Attrs attrs = {}, const std::string& source = "src") {
    REQUIRE(bus.publish(Event{0, 0, source, type, std::move(attrs), nullptr}) == 0);
    l.run();  // dispatch, and the action.* events the answers publish
  }
  const RuleStats& stat(size_t i = 0) { return stats_ = rules.stats(), stats_.at(i); }
  std::vector<RuleStats> stats_;
};

RuleSection rule(const std::string& type, std::vector<std::string> actions, int line = 1) {
  RuleSection r;
  r.mark = {line, 3};
  r.type = type;
  for (auto& a : actions) r.actions.emplace_back(a, Mark{line, 9});
  return r;
}

}  // namespace

TEST_CASE("rules: templates expand from the event's attributes; $$ is a dollar") {
  std::string out, missing;
  CHECK(expand_template("a ${x} b $$ ${y}", {{"x", "1"}, {"y", "2"}}, out, missing));
  CHECK(out == "a 1 b $ 2");
  CHECK_FALSE(expand_template("${nope}", {{"x", "1"}}, out, missing));
  CHECK(missing == "nope");
  std::string err;
  CHECK(check_template("${ok} $$", err));
  CHECK_FALSE(check_template("${open", err));
  CHECK_FALSE(check_template("${}", err));
}

TEST_CASE("rules: a match calls the action with expanded attributes and publishes action.done") {
  Rig rig;
  RuleSection r = rule("vm.start", {"t.ok"});
  r.attrs = {{"name", "vm*"}};
  r.with = {{"name", "${name}"}, {"fixed", "x"}};
  rig.load({r});
  rig.send("vm.start", {{"name", "other"}});  // attribute glob does not match
  rig.send("vm.stop", {{"name", "vm1"}});     // type does not match
  CHECK(rig.target.calls.empty());
  rig.send("vm.start", {{"name", "vm1"}});
  REQUIRE(rig.target.calls.size() == 1);
  CHECK(rig.target.calls[0].second == Attrs{{"name", "vm1"}, {"fixed", "x"}});
  REQUIRE(rig.results.size() == 1);
  CHECK(rig.results[0].source == "hostlet");
  CHECK(rig.results[0].type == "action.done");
  CHECK(*find_attr(rig.results[0].attrs, "rule") == "r.yaml:1");
  CHECK(*find_attr(rig.results[0].attrs, "result.name") == "vm1");
  CHECK(rig.stat().matched == 1);
  CHECK(rig.stat().fired == 1);
  CHECK(rig.stat().actions_ok == 1);
}

TEST_CASE("rules: a chain stops at the first failure; a missing attribute fails before any action runs") {
  Rig rig;
  RuleSection chain = rule("go", {"t.ok", "t.fail", "t.ok"}, 1);
  RuleSection templ = rule("tmpl", {"t.ok"}, 5);
  templ.with = {{"a", "${absent}"}};
  rig.load({chain, templ});
  rig.send("go");
  REQUIRE(rig.target.calls.size() == 2);  // t.ok, t.fail; the third never starts
  CHECK(rig.target.calls[1].first == "t.fail");
  REQUIRE(rig.results.size() == 2);
  CHECK(rig.results[1].type == "action.failed");
  CHECK(*find_attr(rig.results[1].attrs, "error") == "refused on purpose");
  rig.send("tmpl");
  CHECK(rig.target.calls.size() == 2);  // nothing ran
  REQUIRE(rig.results.size() == 3);
  CHECK(rig.results[2].type == "action.failed");
  CHECK(find_attr(rig.results[2].attrs, "error")->find("has no attribute 'absent': no action ran") != std::string::npos);
  CHECK(rig.stat(1).template_errors == 1);
}

TEST_CASE("rules: debounce fires on the first match and ignores matches for the window") {
  Rig rig;
  RuleSection r = rule("tick", {"t.ok"});
  r.debounce_ms = 2000;
  rig.load({r});
  rig.send("tick");
  rig.clock.advance_ms(1999);
  rig.send("tick");
  CHECK(rig.target.calls.size() == 1);
  CHECK(rig.stat().debounced == 1);
  rig.clock.advance_ms(1);  // 2000 ms after the firing
  rig.send("tick");
  CHECK(rig.target.calls.size() == 2);
  rig.send("tick");
  CHECK(rig.target.calls.size() == 2);
  CHECK(rig.stat().matched == 4);
  CHECK(rig.stat().debounced == 2);
}

TEST_CASE("rules: rate_limit is a token bucket with one second's worth of burst") {
  Rig rig;
  RuleSection r = rule("hit", {"t.ok"});
  r.rate_limit = 5;  // 5/s: burst 5, one token every 200 ms
  rig.load({r});
  for (int i = 0; i < 8; i++) rig.send("hit");
  CHECK(rig.target.calls.size() == 5);
  CHECK(rig.stat().rate_limited == 3);
  rig.clock.advance_ms(199);
  rig.send("hit");
  CHECK(rig.target.calls.size() == 5);
  rig.clock.advance_ms(1);  // 200 ms: one token back
  rig.send("hit");
  rig.send("hit");
  CHECK(rig.target.calls.size() == 6);
  rig.clock.advance_ms(60'000);  // a long pause refills only up to the burst
  for (int i = 0; i < 10; i++) rig.send("hit");
  CHECK(rig.target.calls.size() == 11);
}

TEST_CASE("rules: a rate below one per second still allows one firing, then one per period") {
  Rig rig;
  RuleSection r = rule("slow", {"t.ok"});
  r.rate_limit = 0.5;  // 30/m
  rig.load({r});
  rig.send("slow");
  rig.send("slow");
  CHECK(rig.target.calls.size() == 1);
  rig.clock.advance_ms(1999);
  rig.send("slow");
  CHECK(rig.target.calls.size() == 1);
  rig.clock.advance_ms(1);
  rig.send("slow");
  CHECK(rig.target.calls.size() == 2);
}

TEST_CASE("rules: results of the core match only rules whose source is exactly 'hostlet'") {
  Rig rig;
  RuleSection any = rule("*", {"t.ok"}, 1);  // a catch-all must not feed on action.done
  RuleSection own = rule("action.done", {"t.fail"}, 2);
  own.source = "hostlet";
  rig.load({any, own});
  rig.send("x");
  // x -> t.ok (rule 1) -> action.done -> t.fail (rule 2) -> action.failed, which matches neither
  REQUIRE(rig.target.calls.size() == 2);
  CHECK(rig.target.calls[0].first == "t.ok");
  CHECK(rig.target.calls[1].first == "t.fail");
  CHECK(rig.stat(0).matched == 1);
}

TEST_CASE("rules: an unknown action is an error with a did-you-mean at check time") {
  Rig rig;
  ConfigErrors errs;
  REQUIRE(rig.rules.compile({rule("x", {"t.okk"})}, "r.yaml", errs));
  CHECK_FALSE(rig.rules.check_actions(errs));
  REQUIRE(errs.size() == 1);
  CHECK(errs[0].str().find("unknown action 't.okk'") != std::string::npos);
  CHECK(errs[0].str().find("did you mean 't.ok'") != std::string::npos);
}

TEST_CASE("rules: a named rule is named by its name in events, answers and stats") {
  Rig rig;
  RuleSection named = rule("vm.start", {"t.ok"}, 4);
  named.name = "start-vm";
  RuleSection unnamed = rule("vm.stop", {"t.fail"}, 9);
  rig.load({named, unnamed});
  rig.send("vm.start");
  rig.send("vm.stop");
  REQUIRE(rig.results.size() == 2);
  CHECK(*find_attr(rig.results[0].attrs, "rule") == "start-vm");
  CHECK(*find_attr(rig.results[1].attrs, "rule") == "r.yaml:9");
  CHECK(rig.stat(0).id == "start-vm");
  CHECK(rig.stat(0).where == "r.yaml:4");
  CHECK(rig.stat(1).id == "r.yaml:9");
}

TEST_CASE("rules: a new rule set keeps the counters and state of the rules it repeats unchanged") {
  Rig rig;
  RuleSection kept = rule("a", {"t.ok"}, 1);
  kept.debounce_ms = 1000;
  RuleSection changed = rule("b", {"t.ok"}, 2);
  rig.load({kept, changed});
  rig.send("a");
  rig.send("b");
  rig.send("b");
  CHECK(rig.stat(0).fired == 1);
  CHECK(rig.stat(1).fired == 2);
  // The same `kept` rule, now two lines lower, and `changed` with another action list.
  RuleSection added = rule("c", {"t.ok"}, 1);
  RuleSection moved = kept;
  moved.mark = {3, 3};
  RuleSection edited = changed;
  edited.actions.emplace_back("t.ok", Mark{2, 9});
  rig.load({added, moved, edited});
  CHECK(rig.stat(1).where == "r.yaml:3");
  CHECK(rig.stat(1).fired == 1);   // kept
  CHECK(rig.stat(2).fired == 0);   // a changed rule starts afresh
  CHECK(rig.stat(0).matched == 0);
  rig.send("a");  // still inside the debounce window of the kept rule's last firing
  CHECK(rig.stat(1).debounced == 1);
  CHECK(rig.stat(1).fired == 1);
}
