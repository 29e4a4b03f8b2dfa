// Rules: YAML `rules:` compiled into bus subscriptions that turn matching
// events into action calls.
//
// A rule matches on source, type (exact or fnmatch glob) and attribute globs;
// `do:` names one action or a list run in order (the next starts when the
// previous answered ok; a failure ends the chain); `with:` builds the
// actions' attributes from templates ("${attr}" from the event; "$$" is a
// literal '$'). Each answer is published as an event from source "hostlet":
// `action.done` or `action.failed`, so rules can chain and users can watch.
// `debounce` fires on the first matching event and ignores further matches
// for the window (leading edge); `rate_limit` caps firings per second (token
// bucket, burst one second's worth and at least 1). Suppressed events are counted, not queued.
// Events from source "hostlet" match only rules whose source is exactly
// "hostlet", so a catch-all rule never re-fires on its own results.
// A rule is named in stats, events (`rule`) and logs by its `name:`, or by
// FILE:LINE when it has none. A new rule set keeps the counters (and the
// debounce and rate-limit state) of each rule whose definition it repeats
// unchanged, wherever the rule now stands in the file.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "actions.hpp"
#include "bus.hpp"
#include "clock.hpp"
#include "config.hpp"

namespace hostlet {

struct RuleStats {
  std::string id;     // the rule's `name:`, or FILE:LINE when it has none
  std::string where;  // FILE:LINE
  uint64_t matched = 0, fired = 0, debounced = 0, rate_limited = 0, template_errors = 0;
  uint64_t actions_ok = 0, actions_failed = 0;
};

class RuleEngine {
 public:
  // `clock` times debounce and rate limits (tests pass their own).
  RuleEngine(EventBus& bus, ActionRegistry& actions, const Clock& clock = monotonic_clock());
  ~RuleEngine();
  RuleEngine(const RuleEngine&) = delete;
  RuleEngine& operator=(const RuleEngine&) = delete;

  // Compiles `rules` (from `file`). Bad templates and globs are errors.
  // Nothing is active until activate(). Returns false when errs grew.
  bool compile(const std::vector<RuleSection>& rules, const std::string& file, ConfigErrors& errs);
  // Adds an error for every action the compiled rules name that is not
  // registered (with a "did you mean"). Returns false when errs grew.
  bool check_actions(ConfigErrors& errs) const;
  // Subscribes the compiled rules (replacing any active set atomically);
  // rules repeated unchanged from the active set keep their counters.
  void activate();
  void deactivate();
  std::vector<RuleStats> stats() const;
  size_t size() const;

  struct Rule;

 private:
  void fire(const std::shared_ptr<Rule>& rule, const Event& ev);
  void run_chain(std::shared_ptr<struct Chain> chain);

  EventBus& bus_;
  ActionRegistry& actions_;
  const Clock& clock_;
  // shared: a chain still running keeps its rule after a rule set is replaced
  std::vector<std::shared_ptr<Rule>> compiled_;  // waiting for activate()
  std::vector<std::shared_ptr<Rule>> active_;
  std::vector<EventBus::Sub*> subs_;
  std::shared_ptr<bool> alive_;  // chains in flight check it before touching the engine
  std::string file_;
};

// Expands "${name}" from attrs; false with `missing` set when an attribute is absent.
bool expand_template(const std::string& tmpl, const Attrs& attrs, std::string& out, std::string& missing);
// Checks template syntax; false with a message on an unterminated "${" or an empty name.
bool check_template(const std::string& tmpl, std::string& error);

}  // namespace hostlet
