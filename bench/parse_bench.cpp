// Hand-written JSON parsing against simdjson (Debian libsimdjson-dev 3.0.1),
// side by side in one process (issue 14: adopt the fuzzed library where it is
// as fast or faster, keep a hand-written piece only with a measured reason).
//
//   notification lines: unixsock's parse_notification (validates the whole
//     line, extracts type, attrs, id and ack into a reused Notification)
//     against simdjson on-demand and simdjson DOM doing the same extraction
//     into the same Notification, and nlohmann::json::parse as a reference.
//     On-demand validates only what it visits: an unknown key's value is
//     skipped, not checked, so it accepts lines the others refuse; the DOM
//     parser validates all of it.
//   action results: core/json_check's json_valid on a 110 KB domain list (the
//     shape virt.domain.list answers with) against simdjson's DOM parser and
//     nlohmann::json::accept.
//
// Inputs for simdjson are padded once, up front, as a reading buffer with
// SIMDJSON_PADDING spare bytes would be; copying into a padded buffer is not
// counted. Each round runs every candidate once, in an order rotated per
// round; the figures are medians over the rounds, the ratios medians of the
// per-round ratios. `parse_bench [ROUNDS] [--json]`.
#include <simdjson.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include "json_check.hpp"
#include "protocol.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using hostlet::unixsock::Notification;

std::vector<std::string> notification_lines() {
  std::vector<std::string> v;
  for (int i = 0; i < 64; i++) {
    // 50-60 bytes: what a hook script or a udev helper sends.
    v.push_back(R"({"type":"vm.start","attrs":{"name":"vm)" + std::to_string(i) + R"("},"id":)" +
                std::to_string(1000 + i) + "}");
    v.push_back(R"({"type":"disk.full","attrs":{"dev":"sd)" + std::string(1, char('a' + i % 26)) +
                R"(","pct":"97"},"ack":"done"})");
  }
  return v;
}

std::string domain_list() {
  nlohmann::json doms = nlohmann::json::array();
  for (int i = 0; doms.dump().size() < 110000; i++) {
    char uuid[40];
    std::snprintf(uuid, sizeof uuid, "%08x-0000-4000-8000-%012x", i * 2654435761u, i);
    doms.push_back({{"name", "vm-" + std::to_string(i)},
                    {"uuid", uuid},
                    {"id", i % 3 ? i : -1},
                    {"state", i % 3 ? "running" : "shut off"},
                    {"persistent", true},
                    {"autostart", i % 2 == 0},
                    {"vcpus", 2 + i % 6},
                    {"memory_kib", 1048576 * (1 + i % 4)}});
  }
  return nlohmann::json{{"domains", doms}}.dump();
}

// The same extraction as parse_notification, from simdjson values.
template <class Object>
bool fill(Object&& obj, Notification& n) {
  n.clear();
  for (auto field : obj) {
    std::string_view key;
    if (field.unescaped_key().get(key)) return false;
    auto value = field.value();
    if (key == "type") {
      std::string_view t;
      if (value.get_string().get(t)) return false;
      n.type.assign(t);
      n.has_type = true;
    } else if (key == "attrs") {
      simdjson::builtin::ondemand::object attrs;
      if (value.get_object().get(attrs)) return false;
      for (auto a : attrs) {
        std::string_view k, v;
        if (a.unescaped_key().get(k) || a.value().get_string().get(v)) return false;
        if (n.n_attrs == n.attrs.size()) n.attrs.emplace_back();
        n.attrs[n.n_attrs].first.assign(k);
        n.attrs[n.n_attrs++].second.assign(v);
      }
    } else if (key == "id") {
      std::string_view raw;
      if (value.raw_json_token().get(raw)) return false;
      n.id_json.assign(raw);
    } else if (key == "ack") {
      std::string_view a;
      if (value.get_string().get(a)) return false;
    }
  }
  return n.has_type;
}

bool fill_dom(simdjson::dom::element e, Notification& n) {
  n.clear();
  simdjson::dom::object obj;
  if (e.get_object().get(obj)) return false;
  for (auto [key, value] : obj) {
    if (key == "type") {
      std::string_view t;
      if (value.get_string().get(t)) return false;
      n.type.assign(t);
      n.has_type = true;
    } else if (key == "attrs") {
      simdjson::dom::object attrs;
      if (value.get_object().get(attrs)) return false;
      for (auto [k, v] : attrs) {
        std::string_view s;
        if (v.get_string().get(s)) return false;
        if (n.n_attrs == n.attrs.size()) n.attrs.emplace_back();
        n.attrs[n.n_attrs].first.assign(k);
        n.attrs[n.n_attrs++].second.assign(s);
      }
    } else if (key == "id") {
      n.id_json = simdjson::minify(value);
    } else if (key == "ack") {
      std::string_view a;
      if (value.get_string().get(a)) return false;
    }
  }
  return n.has_type;
}

// On-demand parsing of every line, `reps` times; how many were accepted. On
// demand does not look at what follows the object (3.0.1 has no at_end() on a
// document), one more class of line it accepts and the others do not.
template <class Parser>
size_t on_demand(Parser& p, const std::vector<simdjson::padded_string>& lines, size_t reps, Notification& n) {
  size_t ok = 0;
  for (size_t r = 0; r < reps; r++)
    for (const auto& l : lines) {
      auto doc = p.iterate(l);
      auto obj = doc.get_object();
      if (obj.error()) continue;
      ok += fill(obj, n);
    }
  return ok;
}

struct Candidate {
  const char* name;
  std::function<size_t()> run;  // returns how many inputs it accepted
};

// ns per input of each candidate, per round.
std::map<std::string, std::vector<double>> measure(std::vector<Candidate>& cs, size_t inputs_per_run, int rounds,
                                                   size_t expect_ok) {
  std::map<std::string, std::vector<double>> ns;
  for (auto& c : cs) c.run();  // warm caches and allocations
  for (int r = 0; r < rounds; r++) {
    for (size_t k = 0; k < cs.size(); k++) {
      auto& c = cs[(k + r) % cs.size()];
      auto t0 = Clock::now();
      size_t ok = c.run();
      double dt = std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
      if (ok != expect_ok) {
        std::fprintf(stderr, "parse_bench: %s accepted %zu of %zu inputs, expected %zu\n", c.name, ok,
                     inputs_per_run, expect_ok);
        std::exit(1);
      }
      ns[c.name].push_back(dt / static_cast<double>(inputs_per_run));
    }
  }
  return ns;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

double median_ratio(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> r;
  for (size_t i = 0; i < a.size() && i < b.size(); i++) r.push_back(a[i] / b[i]);
  return median(r);
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 9;
  bool as_json = false;
  for (int i = 1; i < argc; i++) {
    if (std::strcmp(argv[i], "--json") == 0) as_json = true;
    else rounds = std::max(1, std::atoi(argv[i]));
  }

  // ---- notification lines
  const auto lines = notification_lines();
  std::vector<simdjson::padded_string> padded;
  for (const auto& l : lines) padded.emplace_back(l);
  const size_t reps = 2000, n_lines = lines.size() * reps;
  Notification n;
  std::string err;
  simdjson::builtin::ondemand::parser od;
  simdjson::dom::parser dom;
  std::vector<Candidate> line_cs = {
      {"hand-written", [&] {
         size_t ok = 0;
         for (size_t r = 0; r < reps; r++)
           for (const auto& l : lines) ok += hostlet::unixsock::parse_notification(l, n, err);
         return ok;
       }},
      {"simdjson on-demand (builtin)", [&] { return on_demand<simdjson::builtin::ondemand::parser>(od, padded, reps, n); }},
      {"simdjson DOM", [&] {
         size_t ok = 0;
         for (size_t r = 0; r < reps; r++)
           for (const auto& p : padded) {
             simdjson::dom::element e;
             if (dom.parse(p).get(e)) continue;
             ok += fill_dom(e, n);
           }
         return ok;
       }},
      {"nlohmann::json::parse", [&] {
         size_t ok = 0;
         for (size_t r = 0; r < reps; r++)
           for (const auto& l : lines) {
             auto j = nlohmann::json::parse(l, nullptr, false);
             ok += j.is_object() && j.contains("type");
           }
         return ok;
       }},
  };
  auto line_ns = measure(line_cs, n_lines, rounds, n_lines);

  // ---- validating a 110 KB action result
  const std::string big = domain_list();
  const simdjson::padded_string big_padded(big);
  const size_t big_reps = 200;
  std::vector<Candidate> big_cs = {
      {"hand-written", [&] {
         size_t ok = 0;
         for (size_t r = 0; r < big_reps; r++) ok += hostlet::json_valid(big);
         return ok;
       }},
      {"simdjson DOM", [&] {
         size_t ok = 0;
         for (size_t r = 0; r < big_reps; r++) {
           simdjson::dom::element e;
           ok += !dom.parse(big_padded).get(e);
         }
         return ok;
       }},
      {"simdjson DOM, copying into padding", [&] {
         // What core/actions.cpp would have to do: the plugin's text is a C
         // string with no padding after it.
         size_t ok = 0;
         for (size_t r = 0; r < big_reps; r++) {
           simdjson::padded_string copy(big);
           simdjson::dom::element e;
           ok += !dom.parse(copy).get(e);
         }
         return ok;
       }},
      {"nlohmann::json::accept", [&] {
         size_t ok = 0;
         for (size_t r = 0; r < big_reps; r++) ok += nlohmann::json::accept(big);
         return ok;
       }},
  };
  auto big_ns = measure(big_cs, big_reps, rounds, big_reps);

  if (as_json) {
    nlohmann::json out;
    for (auto& [k, v] : line_ns) out["line_ns"][k] = median(v);
    for (auto& [k, v] : big_ns) out["result_us"][k] = median(v) / 1000;
    for (auto& c : line_cs) out["line_ratio"][c.name] = median_ratio(line_ns["hand-written"], line_ns[c.name]);
    out["result_ratio_vs_dom"] = median_ratio(big_ns["hand-written"], big_ns["simdjson DOM"]);
    out["rounds"] = rounds;
    out["result_bytes"] = big.size();
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  std::printf("%zu-byte notification lines (%zu distinct), %d rounds; ns per line, median\n\n", lines[0].size(),
              lines.size(), rounds);
  std::printf("| parser | ns/line | hand-written / this |\n|---|---|---|\n");
  for (auto& c : line_cs)
    std::printf("| %s | %.0f | %.2f× |\n", c.name, median(line_ns[c.name]),
                median_ratio(line_ns["hand-written"], line_ns[c.name]));
  std::printf("\nvalidating a %zu-byte domain list, %d rounds; µs per document, median\n\n", big.size(), rounds);
  std::printf("| validator | µs | hand-written / this |\n|---|---|---|\n");
  for (auto& c : big_cs)
    std::printf("| %s | %.1f | %.2f× |\n", c.name, median(big_ns[c.name]) / 1000,
                median_ratio(big_ns["hand-written"], big_ns[c.name]));
  return 0;
}
