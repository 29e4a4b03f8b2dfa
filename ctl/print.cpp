#include "print.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

namespace hostlet::ctl {

using json = nlohmann::json;

namespace {

bool g_headers = true;  // --no-headers: tables without their first row

// Columns two spaces apart; rows[0] is the header (one token per column, so
// that awk's fields match the columns), left out with --no-headers.
std::string table_text(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> w;
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); i++) {
      if (w.size() <= i) w.push_back(0);
      w[i] = std::max(w[i], r[i].size());
    }
  std::string out;
  for (size_t n = g_headers ? 0 : 1; n < rows.size(); n++) {
    const auto& r = rows[n];
    std::string line;
    for (size_t i = 0; i < r.size(); i++) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(w[i] - r[i].size() + 2, ' ');
    }
    out += line + "\n";
  }
  return out;
}

void print_table(const std::vector<std::vector<std::string>>& rows) { fputs(table_text(rows).c_str(), stdout); }

std::string fmt(double v, int prec = 1) {
  char b[64];
  snprintf(b, sizeof b, "%.*f", prec, v);
  return b;
}

}  // namespace

std::string duration_text(double seconds) {
  const long s = seconds > 0 ? static_cast<long>(seconds) : 0;
  char b[64];
  if (s < 60) snprintf(b, sizeof b, "%lds", s);
  else if (s < 3600) snprintf(b, sizeof b, "%ldm %lds", s / 60, s % 60);
  else if (s < 86400) snprintf(b, sizeof b, "%ldh %02ldm", s / 3600, s / 60 % 60);
  else snprintf(b, sizeof b, "%ldd %ldh", s / 86400, s / 3600 % 24);
  return b;
}

std::string scalar(const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

const json& field(const json& o, std::string_view key) {
  static const json none;
  if (!o.is_object()) return none;
  auto it = o.find(key);
  return it == o.end() ? none : *it;
}

double number(const json& v) {
  if (!v.is_number()) return 0;
  double d = v.get<double>();
  return std::isfinite(d) ? d : 0;
}

bool flag(const json& v) { return v.is_boolean() && v.get<bool>(); }

std::string text(const json& v) { return v.is_string() ? v.get<std::string>() : std::string(); }

std::string count_text(const json& v) { return v.is_null() ? "0" : scalar(v); }

void print_attrs(const json& attrs, const char* indent) {
  if (!attrs.is_object()) return;
  for (auto it = attrs.begin(); it != attrs.end(); ++it)
    printf("%s%s=%s\n", indent, it.key().c_str(), scalar(it.value()).c_str());
}

void print_status(const json& d) {
  printf("hostlet %s  pid %s  up %s  config %s  pool %s threads  %s rules\n", scalar(field(d, "version")).c_str(),
         scalar(field(d, "pid")).c_str(), duration_text(number(field(d, "uptime_s"))).c_str(),
         scalar(field(d, "config")).c_str(), scalar(field(d, "threadpool")).c_str(), scalar(field(d, "rules")).c_str());
  if (flag(field(field(d, "reload"), "running")) || number(field(field(d, "reload"), "queued")) > 0)
    printf("reload in progress, %s queued\n", scalar(field(field(d, "reload"), "queued")).c_str());
  std::vector<std::vector<std::string>> rows{
      {"INSTANCE", "PLUGIN", "VERSION", "STATE", "HEALTH", "LOADS", "LAST_LOAD_UTC", "LAST_RESULT"}};
  std::vector<std::string> reasons;  // "NAME: HEALTH: REASON" lines under the table
  for (const auto& i : field(d, "instances")) {
    std::string when = "-";
    if (double last = number(field(i, "last_time")); last > 0 && last < 253402300800.0) {  // before year 10000
      time_t t = static_cast<time_t>(last);
      struct tm tm {};
      char b[32];
      if (gmtime_r(&t, &tm) && strftime(b, sizeof b, "%Y-%m-%d %H:%M:%S", &tm)) when = b;
    }
    std::string state = scalar(field(i, "state"));
    if (flag(field(i, "reloading"))) state += " (reloading)";
    std::string health = i.contains("health") ? scalar(field(i, "health")) : "-";
    if (std::string why = text(field(i, "health_reason")); !why.empty() && health != "ok")
      reasons.push_back(scalar(field(i, "name")) + ": " + health + ": " + why);
    rows.push_back({scalar(field(i, "name")), scalar(field(i, "plugin")), scalar(field(i, "version")), state, health,
                    i.contains("loads") ? scalar(field(i, "loads")) : "-", when,
                    i.contains("last_result") ? scalar(field(i, "last_result")) : "-"});
  }
  print_table(rows);
  for (const auto& r : reasons) printf("%s\n", r.c_str());
}

void print_plugins(const json& d) {
  std::vector<std::vector<std::string>> rows{{"INSTANCE", "PLUGIN", "VERSION", "STATE", "ACTIONS"}};
  for (const auto& p : d) {
    std::string acts;
    for (const auto& a : field(p, "actions")) acts += (acts.empty() ? "" : " ") + scalar(a);
    rows.push_back({scalar(field(p, "instance")), scalar(field(p, "plugin")), scalar(field(p, "version")),
                    scalar(field(p, "state")), acts});
  }
  print_table(rows);
}

void print_describe(const json& d) {
  printf("%s %s (ABI %s)\n  %s\n", scalar(field(d, "plugin")).c_str(), scalar(field(d, "version")).c_str(),
         scalar(field(d, "abi")).c_str(), scalar(field(d, "description")).c_str());
  printf("\nconfig:\n");
  std::vector<std::vector<std::string>> rows{{"  KEY", "TYPE", "DEFAULT", "DESCRIPTION"}};
  for (const auto& k : field(d, "config")) {
    std::string def = flag(field(k, "required"))      ? "(required)"
                      : field(k, "default").is_null() ? "-"
                                                      : scalar(field(k, "default"));
    std::string desc = scalar(field(k, "description"));
    if (const json& range = field(k, "range"); range.is_array() && range.size() == 2)
      desc += " [" + scalar(range[0]) + ".." + scalar(range[1]) + "]";
    rows.push_back({"  " + scalar(field(k, "key")), scalar(field(k, "type")), def, desc});
  }
  print_table(rows);
  printf("\nactions:\n");
  rows = {{"  NAME", "ARGS", "DESCRIPTION"}};
  for (const auto& a : field(d, "actions"))
    rows.push_back({"  " + scalar(field(a, "name")), scalar(field(a, "args")), scalar(field(a, "description"))});
  print_table(rows);
  printf("\nevents:\n");
  rows = {{"  TYPE", "ATTRS", "DESCRIPTION"}};
  for (const auto& e : field(d, "events"))
    rows.push_back({"  " + scalar(field(e, "type")), scalar(field(e, "attrs")), scalar(field(e, "description"))});
  print_table(rows);
}

void set_headers(bool on) { g_headers = on; }

std::string stats_text(const json& d) {
  std::string out;
  auto line = [&out](const char* f, auto... a) {
    char b[512];
    snprintf(b, sizeof b, f, a...);
    out += b;
  };
  auto num = [](const json& v) { return number(v); };
  const json& l = field(d, "loop");
  if (l.contains("lag_p99_1m_ms"))  // agents before the recent window lack it
    line("loop lag p50/p99/max, last %s: %s/%s/%s ms\n", duration_text(num(field(l, "window_s"))).c_str(),
         fmt(num(field(l, "lag_p50_1m_ms")), 2).c_str(), fmt(num(field(l, "lag_p99_1m_ms")), 2).c_str(),
         fmt(num(field(l, "lag_max_1m_ms")), 2).c_str());
  line("loop lag p50/p99/max, since start: %s/%s/%s ms (%s samples)\n", fmt(num(field(l, "lag_p50_ms")), 2).c_str(),
       fmt(num(field(l, "lag_p99_ms")), 2).c_str(), fmt(num(field(l, "lag_max_ms")), 2).c_str(),
       scalar(field(l, "samples")).c_str());
  line("slow callbacks %s", count_text(field(l, "slow_callbacks")).c_str());
  if (l.contains("worst_instance") && !scalar(field(l, "worst_instance")).empty())
    line("  worst %s ms (%s)", fmt(num(field(l, "worst_callback_ms")), 2).c_str(),
         scalar(field(l, "worst_instance")).c_str());
  out += "\n";
  const json& b = field(d, "bus");
  line("bus: published %s  dispatched %s  refused %s  depth %s/%s (max %s)  subscriptions %s\n",
       scalar(field(b, "published")).c_str(), scalar(field(b, "dispatched")).c_str(),
       scalar(field(b, "dropped")).c_str(), scalar(field(b, "depth")).c_str(), scalar(field(b, "capacity")).c_str(),
       scalar(field(b, "max_depth")).c_str(), scalar(field(b, "subscriptions")).c_str());
  const json& a = field(d, "actions");
  line("actions: pending %s  waiting for a lane %s (max %s)  waited %s  wait expired %s  refused %s\n",
       scalar(field(a, "pending")).c_str(), count_text(field(a, "waiting")).c_str(),
       count_text(field(a, "max_waiting")).c_str(), count_text(field(a, "waited")).c_str(),
       count_text(field(a, "wait_expired")).c_str(), count_text(field(a, "wait_refused")).c_str());
  const json& c = field(d, "control");
  line("control: connections %s  requests %s  refused requests %s  failed calls %s  refused peers %s\n",
       scalar(field(c, "connections")).c_str(), scalar(field(c, "requests")).c_str(),
       scalar(field(c, "errors")).c_str(), count_text(field(c, "calls_failed")).c_str(),
       count_text(field(c, "refused")).c_str());
  // Lanes in three tables that each fit 100 columns: now, totals, latencies.
  out += "\nlanes:\n";
  std::vector<std::vector<std::string>> rows{{"  INSTANCE", "RUNNING/MAX", "QUEUED/MAX", "REJECTED", "TIMED_OUT"}};
  std::vector<std::vector<std::string>> totals{{"  INSTANCE", "SUBMITTED", "DONE", "CANCELLED", "SHUTDOWN"}};
  std::vector<std::vector<std::string>> lat{{"  INSTANCE", "WAIT_P50_US", "WAIT_P99_US", "RUN_P50_US", "RUN_P99_US"}};
  std::vector<std::vector<std::string>> lat_1m = lat;
  bool have_1m = false;
  const json& lanes = field(d, "lanes").is_object() ? field(d, "lanes") : json::object();
  for (auto it = lanes.begin(); it != lanes.end(); ++it) {
    const json& s = it.value();
    rows.push_back({"  " + it.key(), scalar(field(s, "running")) + "/" + scalar(field(s, "max_inflight")),
                    scalar(field(s, "queued")) + "/" + scalar(field(s, "max_queue")), scalar(field(s, "rejected")),
                    scalar(field(s, "timed_out"))});
    totals.push_back({"  " + it.key(), scalar(field(s, "submitted")), scalar(field(s, "done")),
                      scalar(field(s, "cancelled")), scalar(field(s, "shutdown"))});
    auto latency_row = [&](const char* wait, const char* run) -> std::vector<std::string> {
      return {"  " + it.key(), fmt(num(field(field(s, wait), "p50")), 0), fmt(num(field(field(s, wait), "p99")), 0),
              fmt(num(field(field(s, run), "p50")), 0), fmt(num(field(field(s, run), "p99")), 0)};
    };
    lat.push_back(latency_row("queue_wait_us", "run_time_us"));
    if (s.contains("queue_wait_us_1m")) {
      have_1m = true;
      lat_1m.push_back(latency_row("queue_wait_us_1m", "run_time_us_1m"));
    }
  }
  out += table_text(rows);
  out += "\nlane totals:\n";
  out += table_text(totals);
  if (have_1m) {
    out += "\nlane latency, last " + duration_text(num(field(l, "window_s"))) +
           " (wait: submit to start on a pool thread; run: the work):\n";
    out += table_text(lat_1m);
    out += "\nlane latency, since start:\n";
  } else {
    out += "\nlane latency since start (wait: submit to start on a pool thread; run: the work):\n";
  }
  out += table_text(lat);
  if (d.contains("rules") && !field(d, "rules").empty()) {
    out += "\nrules:\n";
    rows = {{"  RULE", "MATCHED", "FIRED", "DEBOUNCED", "RATE_LIMITED", "TEMPLATE_ERRORS", "OK", "FAILED"}};
    for (const auto& r : field(d, "rules"))
      rows.push_back({"  " + scalar(field(r, "rule")), scalar(field(r, "matched")), scalar(field(r, "fired")),
                      scalar(field(r, "debounced")), scalar(field(r, "rate_limited")),
                      scalar(field(r, "template_errors")), scalar(field(r, "actions_ok")),
                      scalar(field(r, "actions_failed"))});
    out += table_text(rows);
  }
  return out;
}

void print_stats(const json& d) { fputs(stats_text(d).c_str(), stdout); }

std::string attr_value_text(const std::string& v) {
  bool plain = !v.empty();
  for (unsigned char c : v)
    if (c <= ' ' || c == '"' || c == '\\' || c == '=' || c == 0x7f) plain = false;
  return plain ? v : json(v).dump();
}

std::string event_line(const json& e) {
  double when = number(field(e, "time"));
  if (when < 0 || when >= 253402300800.0) when = 0;  // 1970 to year 9999, else the epoch
  const long long ms_total = std::llround(when * 1000);
  time_t secs = static_cast<time_t>(ms_total / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char ts[40];
  strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  std::string line = ts;
  char ms[8];
  snprintf(ms, sizeof ms, ".%03dZ", static_cast<int>(ms_total % 1000));
  line += ms;
  // quoted like values when odd (a space or a newline would break the line)
  line += " " + attr_value_text(scalar(field(e, "source"))) + " " + attr_value_text(scalar(field(e, "type")));
  if (e.contains("attrs") && field(e, "attrs").is_object())
    for (auto it = field(e, "attrs").begin(); it != field(e, "attrs").end(); ++it)
      line += " " + it.key() + "=" +
              attr_value_text(it.value().is_string() ? it.value().get<std::string>() : it.value().dump());
  return line;
}

void print_event(const json& e) {
  printf("%s\n", event_line(e).c_str());
  fflush(stdout);
}

}  // namespace hostlet::ctl
