#include "rules.hpp"

#include <fnmatch.h>
#include <uv.h>

#include <algorithm>

#include "log.hpp"

namespace hostlet {

struct RuleEngine::Rule {
  std::string file;   // where it was read from
  std::string where;  // FILE:LINE
  std::string id;     // name, or where when unnamed: in events and ack replies
  std::string label;  // for logs: "FILE:LINE", or "'name' (FILE:LINE)"
  std::string definition;  // everything that decides what it does, to recognise it after a reload
  std::string source, type;
  bool source_glob = false, type_glob = false;
  std::vector<std::pair<std::string, std::string>> attrs;
  std::vector<std::string> actions;
  std::vector<Mark> action_marks;
  std::vector<std::pair<std::string, std::string>> with;
  uint64_t debounce_ns = 0;
  CallOptions call_opts;  // action_wait of the rule, if set
  double rate = 0;  // firings per second; 0 = unlimited
  // state
  uint64_t last_fire_ns = 0;
  double tokens = 0;
  uint64_t tokens_at_ns = 0;
  RuleStats stats;
};

// One firing of a rule: its actions run one after the other.
struct Chain {
  std::shared_ptr<RuleEngine::Rule> rule;
  std::shared_ptr<bool> alive;
  std::vector<std::pair<std::string, Attrs>> steps;  // action, expanded attributes
  size_t next = 0;
  uint64_t event_id;
  std::string event_source, event_type;
  std::shared_ptr<Tracker> tracker;
};

bool check_template(const std::string& t, std::string& error) {
  for (size_t i = 0; i < t.size(); i++) {
    if (t[i] != '$') continue;
    if (i + 1 < t.size() && t[i + 1] == '$') {
      i++;
      continue;
    }
    if (i + 1 >= t.size() || t[i + 1] != '{') continue;  // a lone '$' is literal
    size_t end = t.find('}', i + 2);
    if (end == std::string::npos) {
      error = "unterminated '${' in template '" + t + "'";
      return false;
    }
    if (end == i + 2) {
      error = "empty '${}' in template '" + t + "'";
      return false;
    }
    i = end;
  }
  return true;
}

bool expand_template(const std::string& t, const Attrs& attrs, std::string& out, std::string& missing) {
  out.clear();
  out.reserve(t.size());
  for (size_t i = 0; i < t.size(); i++) {
    if (t[i] == '$' && i + 1 < t.size() && t[i + 1] == '$') {
      out += '$';
      i++;
      continue;
    }
    if (t[i] == '$' && i + 1 < t.size() && t[i + 1] == '{') {
      size_t end = t.find('}', i + 2);
      if (end == std::string::npos) {
        missing = t.substr(i);
        return false;
      }
      std::string name = t.substr(i + 2, end - i - 2);
      const std::string* v = find_attr(attrs, name);
      if (!v) {
        missing = name;
        return false;
      }
      out += *v;
      i = end;
      continue;
    }
    out += t[i];
  }
  return true;
}

namespace {

// A rule's definition as one string: equal for two rules that do the same.
std::string definition_of(const RuleSection& rs) {
  std::string d;
  auto add = [&d](const std::string& s) {
    d += std::to_string(s.size());
    d += ':';
    d += s;
  };
  add(rs.name);
  add(rs.source);
  add(rs.type);
  for (const auto& [k, g] : rs.attrs) add(k), add(g);
  d += '|';
  for (const auto& a : rs.actions) add(a.first);
  d += '|';
  for (const auto& [k, t] : rs.with) add(k), add(t);
  d += '|' + std::to_string(rs.debounce_ms) + '|' + std::to_string(rs.rate_limit) + '|' +
       std::to_string(rs.action_wait_ms);
  return d;
}

}  // namespace

RuleEngine::RuleEngine(EventBus& bus, ActionRegistry& actions, const Clock& clock)
    : bus_(bus), actions_(actions), clock_(clock), alive_(std::make_shared<bool>(true)) {}

RuleEngine::~RuleEngine() {
  *alive_ = false;
  deactivate();
}

bool RuleEngine::compile(const std::vector<RuleSection>& rules, const std::string& file, ConfigErrors& errs) {
  size_t before = errs.size();
  file_ = file;
  compiled_.clear();
  for (const auto& rs : rules) {
    auto r = std::make_shared<Rule>();
    const std::string& from = rs.file.empty() ? file : rs.file;  // a conf.d fragment's rules name their file
    r->file = from;
    r->where = from + ":" + std::to_string(rs.mark.line);
    r->id = rs.name.empty() ? r->where : rs.name;
    r->label = rs.name.empty() ? r->where : "'" + rs.name + "' (" + r->where + ")";
    r->definition = definition_of(rs);
    r->stats.where = r->where;
    r->stats.id = r->id;
    auto glob_ok = [&](const std::string& g, const char* what) {
      if (valid_glob(g)) return true;
      errs.push_back({from, rs.mark, std::string("rule: bad glob in ") + what + ": '" + g + "' (unbalanced '[')"});
      return false;
    };
    r->source = rs.source;
    r->type = rs.type;
    glob_ok(rs.source, "on.source");
    glob_ok(rs.type, "on.type");
    r->source_glob = is_glob(rs.source);
    r->type_glob = is_glob(rs.type);
    for (const auto& [k, g] : rs.attrs) {
      glob_ok(g, ("on.attrs." + k).c_str());
      r->attrs.emplace_back(k, g);
    }
    for (const auto& [name, mark] : rs.actions) {
      r->actions.push_back(name);
      r->action_marks.push_back(mark);
    }
    for (const auto& [k, t] : rs.with) {
      std::string e;
      if (!check_template(t, e)) errs.push_back({from, rs.with_mark, "rule: with." + k + ": " + e});
      r->with.emplace_back(k, t);
    }
    r->debounce_ns = rs.debounce_ms * 1000000ull;
    if (rs.action_wait_ms >= 0) r->call_opts.wait_ms = static_cast<uint64_t>(rs.action_wait_ms);
    r->rate = rs.rate_limit;
    r->tokens = std::max(1.0, rs.rate_limit);  // starts with a full bucket
    compiled_.push_back(std::move(r));
  }
  return errs.size() == before;
}

bool RuleEngine::check_actions(ConfigErrors& errs) const {
  size_t before = errs.size();
  auto known = actions_.names();
  for (const auto& r : compiled_)
    for (size_t i = 0; i < r->actions.size(); i++) {
      const std::string& name = r->actions[i];
      if (actions_.exists(name)) continue;
      std::string msg = "rule: unknown action '" + name + "'";
      std::string close = did_you_mean(name, known);
      if (!close.empty()) msg += " (did you mean '" + close + "'?)";
      errs.push_back({r->file, r->action_marks[i], msg});
    }
  return errs.size() == before;
}

void RuleEngine::activate() {
  // Rules the new set repeats unchanged keep their counters and state: a
  // reload that changes nothing resets nothing. Identical twins match in order.
  std::vector<bool> taken(active_.size(), false);
  for (auto& r : compiled_)
    for (size_t i = 0; i < active_.size(); i++) {
      if (taken[i] || active_[i]->definition != r->definition) continue;
      taken[i] = true;
      const Rule& old = *active_[i];
      RuleStats kept = old.stats;
      kept.where = r->where;
      kept.id = r->id;
      r->stats = kept;
      r->last_fire_ns = old.last_fire_ns;
      r->tokens = old.tokens;
      r->tokens_at_ns = old.tokens_at_ns;
      break;
    }
  deactivate();
  active_ = std::move(compiled_);
  compiled_.clear();
  for (auto& r : active_) {
    std::string glob = r->type.empty() ? "*" : r->type;
    EventBus::Sub* s = bus_.subscribe(glob, [this, r](const Event& ev) { fire(r, ev); }, this);
    if (s) subs_.push_back(s);
  }
}

void RuleEngine::deactivate() {
  for (auto* s : subs_) bus_.unsubscribe(s);
  subs_.clear();
  active_.clear();
}

size_t RuleEngine::size() const { return active_.size(); }

std::vector<RuleStats> RuleEngine::stats() const {
  std::vector<RuleStats> v;
  for (const auto& r : active_) v.push_back(r->stats);
  return v;
}

void RuleEngine::fire(const std::shared_ptr<Rule>& rp, const Event& ev) {
  Rule& r = *rp;
  // The core's own events (action.done/failed) only reach rules that name
  // source "hostlet" explicitly, so a catch-all rule cannot feed on itself.
  if (ev.source == "hostlet" && r.source != "hostlet") return;
  if (!r.source.empty()) {
    if (r.source_glob ? fnmatch(r.source.c_str(), ev.source.c_str(), 0) != 0 : r.source != ev.source) return;
  }
  for (const auto& [k, g] : r.attrs) {
    const std::string* v = find_attr(ev.attrs, k);
    if (!v || fnmatch(g.c_str(), v->c_str(), 0) != 0) return;
  }
  r.stats.matched++;
  uint64_t now = clock_.now_ns();
  if (r.debounce_ns && r.last_fire_ns && now - r.last_fire_ns < r.debounce_ns) {
    r.stats.debounced++;
    return;
  }
  if (r.rate > 0) {
    double burst = std::max(1.0, r.rate);  // one second's worth, at least one firing
    if (r.tokens_at_ns) r.tokens = std::min(burst, r.tokens + r.rate * static_cast<double>(now - r.tokens_at_ns) / 1e9);
    r.tokens_at_ns = now;
    if (r.tokens < 1.0) {
      r.stats.rate_limited++;
      return;
    }
    r.tokens -= 1.0;
  }
  r.last_fire_ns = now;

  auto chain = std::make_shared<Chain>();
  chain->rule = rp;
  chain->alive = alive_;
  chain->event_id = ev.id;
  chain->event_source = ev.source;
  chain->event_type = ev.type;
  chain->tracker = ev.tracker;
  Attrs args;
  for (const auto& [k, t] : r.with) {
    std::string val, missing;
    if (!expand_template(t, ev.attrs, val, missing)) {
      r.stats.template_errors++;
      std::string msg = "with." + k + ": event " + std::to_string(ev.id) + " (" + ev.source + " " + ev.type +
                        ") has no attribute '" + missing + "': no action ran";
      log(Level::Warn, "hostlet", "rule %s: %s", r.label.c_str(), msg.c_str());
      for (const auto& a : r.actions) {
        if (chain->tracker) chain->tracker->add({a, r.id, ActionResult::failure(msg)});
        bus_.publish(Event{0, 0, "hostlet", "action.failed",
                           {{"action", a}, {"rule", r.id}, {"event", std::to_string(ev.id)}, {"error", msg}},
                           nullptr});
        break;  // the chain did not start: report it once, for the first action
      }
      return;
    }
    args.emplace_back(k, std::move(val));
  }
  r.stats.fired++;
  for (const auto& a : r.actions) chain->steps.emplace_back(a, args);
  if (chain->tracker) chain->tracker->hold();
  run_chain(std::move(chain));
}

void RuleEngine::run_chain(std::shared_ptr<Chain> chain) {
  if (chain->next >= chain->steps.size() || !*chain->alive) {
    if (chain->tracker) chain->tracker->release();
    return;
  }
  auto& [action, attrs] = chain->steps[chain->next++];
  std::string name = action;
  int r = actions_.call(name, attrs, [this, chain, name](ActionResult&& res) {
    if (!*chain->alive) {  // the engine is gone (shutdown): just settle the tracker
      if (chain->tracker) {
        chain->tracker->add({name, chain->rule->id, std::move(res)});
        chain->tracker->release();
      }
      return;
    }
    Rule& rule = *chain->rule;
    Attrs ea{{"action", name}, {"rule", rule.id}, {"event", std::to_string(chain->event_id)},
             {"trigger_source", chain->event_source}, {"trigger_type", chain->event_type}};
    bool ok = res.ok;
    if (ok) {
      rule.stats.actions_ok++;
      for (const auto& kv : res.attrs) ea.emplace_back("result." + kv.first, kv.second);
    } else {
      rule.stats.actions_failed++;
      ea.emplace_back("error", res.error);
      log(Level::Warn, "hostlet", "rule %s: %s failed: %s", rule.label.c_str(), name.c_str(), res.error.c_str());
    }
    bus_.publish(Event{0, 0, "hostlet", ok ? "action.done" : "action.failed", std::move(ea), nullptr});
    if (chain->tracker) chain->tracker->add({name, rule.id, std::move(res)});
    if (ok) {
      run_chain(chain);
    } else if (chain->tracker) {
      chain->tracker->release();
    }
  }, chain->rule->call_opts);
  if (r == -ENOENT) {
    Rule& rule = *chain->rule;
    std::string msg = "no such action '" + name + "'";
    rule.stats.actions_failed++;
    log(Level::Warn, "hostlet", "rule %s: %s", rule.label.c_str(), msg.c_str());
    bus_.publish(Event{0, 0, "hostlet", "action.failed",
                       {{"action", name}, {"rule", rule.id}, {"event", std::to_string(chain->event_id)}, {"error", msg}},
                       nullptr});
    if (chain->tracker) {
      chain->tracker->add({name, rule.id, ActionResult::failure(msg)});
      chain->tracker->release();
    }
  }
}

}  // namespace hostlet
