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

void print_attrs(const json& attrs, const char* indent) {
  if (!attrs.is_object()) return;
  for (auto it = attrs.begin(); it != attrs.end(); ++it)
    printf("%s%s=%s\n", indent, it.key().c_str(), scalar(it.value()).c_str());
}

void print_status(const json& d) {
  printf("hostlet %s  pid %s  up %s  config %s  pool %s threads  %s rules\n", scalar(d["version"]).c_str(),
         scalar(d["pid"]).c_str(), duration_text(d.value("uptime_s", 0.0)).c_str(), scalar(d["config"]).c_str(),
         scalar(d["threadpool"]).c_str(), scalar(d["rules"]).c_str());
  if (d.contains("reload") && (d["reload"].value("running", false) || d["reload"].value("queued", 0) > 0))
    printf("reload in progress, %s queued\n", scalar(d["reload"]["queued"]).c_str());
  std::vector<std::vector<std::string>> rows{
      {"INSTANCE", "PLUGIN", "VERSION", "STATE", "HEALTH", "LOADS", "LAST_LOAD_UTC", "LAST_RESULT"}};
  std::vector<std::string> reasons;  // "NAME: HEALTH: REASON" lines under the table
  for (const auto& i : d["instances"]) {
    std::string when = "-";
    if (i.contains("last_time") && i["last_time"].is_number()) {
      time_t t = static_cast<time_t>(i["last_time"].get<double>());
      struct tm tm {};
      char b[32];
      if (gmtime_r(&t, &tm) && strftime(b, sizeof b, "%Y-%m-%d %H:%M:%S", &tm)) when = b;
    }
    std::string state = scalar(i["state"]);
    if (i.value("reloading", false)) state += " (reloading)";
    std::string health = i.contains("health") ? scalar(i["health"]) : "-";
    if (std::string why = i.value("health_reason", std::string()); !why.empty() && health != "ok")
      reasons.push_back(scalar(i["name"]) + ": " + health + ": " + why);
    rows.push_back({scalar(i["name"]), scalar(i["plugin"]), scalar(i["version"]), state, health,
                    i.contains("loads") ? scalar(i["loads"]) : "-", when,
                    i.contains("last_result") ? scalar(i["last_result"]) : "-"});
  }
  print_table(rows);
  for (const auto& r : reasons) printf("%s\n", r.c_str());
}

void print_plugins(const json& d) {
  std::vector<std::vector<std::string>> rows{{"INSTANCE", "PLUGIN", "VERSION", "STATE", "ACTIONS"}};
  for (const auto& p : d) {
    std::string acts;
    for (const auto& a : p["actions"]) acts += (acts.empty() ? "" : " ") + scalar(a);
    rows.push_back({scalar(p["instance"]), scalar(p["plugin"]), scalar(p["version"]), scalar(p["state"]), acts});
  }
  print_table(rows);
}

void print_describe(const json& d) {
  printf("%s %s (ABI %s)\n  %s\n", scalar(d["plugin"]).c_str(), scalar(d["version"]).c_str(),
         scalar(d["abi"]).c_str(), scalar(d["description"]).c_str());
  printf("\nconfig:\n");
  std::vector<std::vector<std::string>> rows{{"  KEY", "TYPE", "DEFAULT", "DESCRIPTION"}};
  for (const auto& k : d["config"]) {
    std::string def = k["required"].get<bool>() ? "(required)" : k["default"].is_null() ? "-" : scalar(k["default"]);
    std::string desc = scalar(k["description"]);
    if (k.contains("range")) desc += " [" + scalar(k["range"][0]) + ".." + scalar(k["range"][1]) + "]";
    rows.push_back({"  " + scalar(k["key"]), scalar(k["type"]), def, desc});
  }
  print_table(rows);
  printf("\nactions:\n");
  rows = {{"  NAME", "ARGS", "DESCRIPTION"}};
  for (const auto& a : d["actions"]) rows.push_back({"  " + scalar(a["name"]), scalar(a["args"]), scalar(a["description"])});
  print_table(rows);
  printf("\nevents:\n");
  rows = {{"  TYPE", "ATTRS", "DESCRIPTION"}};
  for (const auto& e : d["events"]) rows.push_back({"  " + scalar(e["type"]), scalar(e["attrs"]), scalar(e["description"])});
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
  auto num = [](const json& v) { return v.is_number() ? v.get<double>() : 0.0; };
  const json& l = d["loop"];
  if (l.contains("lag_p99_1m_ms"))  // agents before the recent window lack it
    line("loop lag p50/p99/max, last %s: %s/%s/%s ms\n", duration_text(num(l["window_s"])).c_str(),
         fmt(num(l["lag_p50_1m_ms"]), 2).c_str(), fmt(num(l["lag_p99_1m_ms"]), 2).c_str(),
         fmt(num(l["lag_max_1m_ms"]), 2).c_str());
  line("loop lag p50/p99/max, since start: %s/%s/%s ms (%s samples)\n", fmt(num(l["lag_p50_ms"]), 2).c_str(),
       fmt(num(l["lag_p99_ms"]), 2).c_str(), fmt(num(l["lag_max_ms"]), 2).c_str(), scalar(l["samples"]).c_str());
  line("slow callbacks %s", scalar(l.value("slow_callbacks", json(0))).c_str());
  if (l.contains("worst_instance") && !scalar(l["worst_instance"]).empty())
    line("  worst %s ms (%s)", fmt(num(l["worst_callback_ms"]), 2).c_str(), scalar(l["worst_instance"]).c_str());
  out += "\n";
  const json& b = d["bus"];
  line("bus: published %s  dispatched %s  refused %s  depth %s/%s (max %s)  subscriptions %s\n",
       scalar(b["published"]).c_str(), scalar(b["dispatched"]).c_str(), scalar(b["dropped"]).c_str(),
       scalar(b["depth"]).c_str(), scalar(b["capacity"]).c_str(), scalar(b["max_depth"]).c_str(),
       scalar(b["subscriptions"]).c_str());
  const json& a = d["actions"];
  line("actions: pending %s  waiting for a lane %s (max %s)  waited %s  wait expired %s  refused %s\n",
       scalar(a["pending"]).c_str(), scalar(a.value("waiting", json(0))).c_str(),
       scalar(a.value("max_waiting", json(0))).c_str(), scalar(a.value("waited", json(0))).c_str(),
       scalar(a.value("wait_expired", json(0))).c_str(), scalar(a.value("wait_refused", json(0))).c_str());
  const json& c = d["control"];
  line("control: connections %s  requests %s  refused requests %s  failed calls %s  refused peers %s\n",
       scalar(c["connections"]).c_str(), scalar(c["requests"]).c_str(), scalar(c["errors"]).c_str(),
       scalar(c.value("calls_failed", json(0))).c_str(), scalar(c.value("refused", json(0))).c_str());
  // Lanes in three tables that each fit 100 columns: now, totals, latencies.
  out += "\nlanes:\n";
  std::vector<std::vector<std::string>> rows{{"  INSTANCE", "RUNNING/MAX", "QUEUED/MAX", "REJECTED", "TIMED_OUT"}};
  std::vector<std::vector<std::string>> totals{{"  INSTANCE", "SUBMITTED", "DONE", "CANCELLED", "SHUTDOWN"}};
  std::vector<std::vector<std::string>> lat{{"  INSTANCE", "WAIT_P50_US", "WAIT_P99_US", "RUN_P50_US", "RUN_P99_US"}};
  std::vector<std::vector<std::string>> lat_1m = lat;
  bool have_1m = false;
  for (auto it = d["lanes"].begin(); it != d["lanes"].end(); ++it) {
    const json& s = it.value();
    rows.push_back({"  " + it.key(), scalar(s["running"]) + "/" + scalar(s["max_inflight"]),
                    scalar(s["queued"]) + "/" + scalar(s["max_queue"]), scalar(s["rejected"]), scalar(s["timed_out"])});
    totals.push_back({"  " + it.key(), scalar(s["submitted"]), scalar(s["done"]), scalar(s["cancelled"]),
                      scalar(s["shutdown"])});
    auto latency_row = [&](const char* wait, const char* run) -> std::vector<std::string> {
      return {"  " + it.key(), fmt(num(s[wait]["p50"]), 0), fmt(num(s[wait]["p99"]), 0), fmt(num(s[run]["p50"]), 0),
              fmt(num(s[run]["p99"]), 0)};
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
    out += "\nlane latency, last " + duration_text(num(l["window_s"])) +
           " (wait: submit to start on a pool thread; run: the work):\n";
    out += table_text(lat_1m);
    out += "\nlane latency, since start:\n";
  } else {
    out += "\nlane latency since start (wait: submit to start on a pool thread; run: the work):\n";
  }
  out += table_text(lat);
  if (d.contains("rules") && !d["rules"].empty()) {
    out += "\nrules:\n";
    rows = {{"  RULE", "MATCHED", "FIRED", "DEBOUNCED", "RATE_LIMITED", "TEMPLATE_ERRORS", "OK", "FAILED"}};
    for (const auto& r : d["rules"])
      rows.push_back({"  " + scalar(r["rule"]), scalar(r["matched"]), scalar(r["fired"]), scalar(r["debounced"]),
                      scalar(r["rate_limited"]), scalar(r["template_errors"]), scalar(r["actions_ok"]),
                      scalar(r["actions_failed"])});
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
  const long long ms_total = std::llround(e.value("time", 0.0) * 1000);
  time_t secs = static_cast<time_t>(ms_total / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char ts[40];
  strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  std::string line = ts;
  char ms[8];
  snprintf(ms, sizeof ms, ".%03dZ", static_cast<int>(ms_total % 1000));
  line += ms;
  line += " " + scalar(e["source"]) + " " + scalar(e["type"]);
  if (e.contains("attrs") && e["attrs"].is_object())
    for (auto it = e["attrs"].begin(); it != e["attrs"].end(); ++it)
      line += " " + it.key() + "=" + attr_value_text(it.value().is_string() ? it.value().get<std::string>() : it.value().dump());
  return line;
}

void print_event(const json& e) {
  printf("%s\n", event_line(e).c_str());
  fflush(stdout);
}

}  // namespace hostlet::ctl
