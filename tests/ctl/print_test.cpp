// hostlet-ctl's formatting of the agent's replies, as pure functions.
#include <catch2/catch.hpp>

#include "print.hpp"

using hostlet::ctl::duration_text;

TEST_CASE("ctl print: an uptime reads as seconds, minutes, hours or days, never raw seconds") {
  CHECK(duration_text(0) == "0s");
  CHECK(duration_text(-3) == "0s");
  CHECK(duration_text(59.9) == "59s");
  CHECK(duration_text(60) == "1m 0s");
  CHECK(duration_text(252) == "4m 12s");
  CHECK(duration_text(3600) == "1h 00m");
  CHECK(duration_text(11100) == "3h 05m");
  CHECK(duration_text(259200) == "3d 0h");
  CHECK(duration_text(266400) == "3d 2h");
}

TEST_CASE("ctl print: an event line has a UTC date and time, and values that would not split back are quoted") {
  nlohmann::json e = {{"time", 1796236585.123},
                      {"source", "virt"},
                      {"type", "connection.lost"},
                      {"attrs",
                       {{"reason", "keepalive"},
                        {"last_error", "Failed to connect \"x\""},
                        {"empty", ""},
                        {"eq", "a=b"},
                        {"nl", "a\nb"}}}};
  // nlohmann orders keys by name
  CHECK(hostlet::ctl::event_line(e) ==
        "2026-12-02T18:36:25.123Z virt connection.lost empty=\"\" eq=\"a=b\" "
        "last_error=\"Failed to connect \\\"x\\\"\" nl=\"a\\nb\" reason=keepalive");
  CHECK(hostlet::ctl::attr_value_text("vm-1/é") == "vm-1/é");
  CHECK(hostlet::ctl::attr_value_text("a\\b") == "\"a\\\\b\"");
}

TEST_CASE("ctl print: stats come in sections under 100 columns, one-token headers, in-flight beside its limit") {
  nlohmann::json d = nlohmann::json::parse(R"({
    "loop": {"lag_p50_ms": 0.01, "lag_p99_ms": 0.2, "lag_max_ms": 3.5, "samples": 1200, "slow_callbacks": 0,
             "worst_callback_ms": 0.4, "worst_instance": "virt"},
    "bus": {"published": 100, "dispatched": 100, "dropped": 0, "depth": 0, "capacity": 65536, "max_depth": 12,
            "backlog": 0, "subscriptions": 3},
    "actions": {"pending": 2, "waiting": 5, "max_waiting": 40, "waited": 77, "wait_expired": 1, "wait_refused": 0},
    "control": {"connections": 1, "requests": 9, "errors": 1, "calls_failed": 2, "refused": 0},
    "lanes": {"a-rather-long-instance-name": {"max_inflight": 1024, "max_queue": 1000000, "running": 1024,
               "queued": 999999, "submitted": 123456789012, "done": 123456789012, "rejected": 123456789,
               "cancelled": 12345678, "timed_out": 1234567, "shutdown": 123456,
               "queue_wait_us": {"p50": 123456.0, "p99": 1234567.0}, "run_time_us": {"p50": 98765.0, "p99": 987654.0}}},
    "rules": [{"rule": "restart-vm", "matched": 5, "fired": 4, "debounced": 1, "rate_limited": 0, "template_errors": 0,
               "actions_ok": 4, "actions_failed": 0}]})");
  std::string text = hostlet::ctl::stats_text(d);
  INFO(text);
  size_t from = 0;
  while (from < text.size()) {
    size_t nl = text.find('\n', from);
    CHECK(nl - from <= 100);
    from = nl + 1;
  }
  CHECK(text.find("  INSTANCE                     RUNNING/MAX  QUEUED/MAX      REJECTED   TIMED_OUT\n") !=
        std::string::npos);
  CHECK(text.find("1024/1024    999999/1000000  123456789  1234567\n") != std::string::npos);
  CHECK(text.find("TIMED_OUT") != std::string::npos);
  CHECK(text.find("RATE_LIMITED  TEMPLATE_ERRORS") != std::string::npos);
  CHECK(text.find("actions: pending 2  waiting for a lane 5 (max 40)  waited 77  wait expired 1  refused 0\n") !=
        std::string::npos);
  CHECK(text.find("control: connections 1  requests 9  refused requests 1  failed calls 2  refused peers 0\n") !=
        std::string::npos);
  hostlet::ctl::set_headers(false);
  std::string bare = hostlet::ctl::stats_text(d);
  hostlet::ctl::set_headers(true);
  CHECK(bare.find("INSTANCE") == std::string::npos);
  CHECK(bare.find("  restart-vm  5") != std::string::npos);
}

TEST_CASE("ctl print: stats show percentiles over the last minute before those since start") {
  nlohmann::json d = nlohmann::json::parse(R"({
    "loop": {"lag_p50_ms": 0.01, "lag_p99_ms": 0.2, "lag_max_ms": 3.5, "samples": 1200, "slow_callbacks": 0,
             "lag_p50_1m_ms": 0.02, "lag_p99_1m_ms": 1.5, "lag_max_1m_ms": 2.0, "window_s": 55.2},
    "bus": {"published": 0, "dispatched": 0, "dropped": 0, "depth": 0, "capacity": 8, "max_depth": 0,
            "subscriptions": 0},
    "actions": {"pending": 0}, "control": {"connections": 0, "requests": 0, "errors": 0},
    "lanes": {"virt": {"max_inflight": 4, "max_queue": 64, "running": 0, "queued": 0, "rejected": 0, "timed_out": 0,
               "submitted": 9, "done": 9, "cancelled": 0, "shutdown": 0,
               "queue_wait_us": {"p50": 10.0, "p99": 20.0}, "run_time_us": {"p50": 30.0, "p99": 40.0},
               "queue_wait_us_1m": {"p50": 11.0, "p99": 21.0}, "run_time_us_1m": {"p50": 31.0, "p99": 41.0}}}})");
  std::string text = hostlet::ctl::stats_text(d);
  INFO(text);
  CHECK(text.find("loop lag p50/p99/max, last 55s: 0.02/1.50/2.00 ms\n"
                  "loop lag p50/p99/max, since start: 0.01/0.20/3.50 ms (1200 samples)") != std::string::npos);
  size_t recent = text.find("lane latency, last 55s (wait:");
  size_t since = text.find("lane latency, since start:");
  REQUIRE(recent != std::string::npos);
  REQUIRE(since != std::string::npos);
  CHECK(recent < since);
  CHECK(text.find("  virt      11           21           31          41\n", recent) < since);
  CHECK(text.find("  virt      10           20           30          40\n", since) != std::string::npos);

  // An agent without the recent window: only since start, as before.
  d["loop"].erase("lag_p99_1m_ms");
  d["lanes"]["virt"].erase("queue_wait_us_1m");
  text = hostlet::ctl::stats_text(d);
  CHECK(text.find("last 55s") == std::string::npos);
  CHECK(text.find("lane latency since start (wait:") != std::string::npos);
}

TEST_CASE("ctl print: a reply with keys missing or of another type prints, it does not throw or abort") {
  using nlohmann::json;
  // As from an agent of another version: everything the printers read is
  // absent or of a type they do not expect.
  for (const char* text : {R"({})", R"([])", R"(7)", R"("x")", R"(null)",
                           R"({"loop": "x", "bus": [1], "actions": 3, "control": null, "lanes": [1, 2],
                               "rules": {"a": 1}})",
                           R"({"lanes": {"w": {"queue_wait_us": 5, "run_time_us": {"p50": "slow"}}}})"}) {
    json d = json::parse(text);
    INFO(text);
    std::string out;
    CHECK_NOTHROW(out = hostlet::ctl::stats_text(d));
    CHECK(out.find("loop lag p50/p99/max, since start: 0.00/0.00/0.00 ms") != std::string::npos);
  }
  json lanes = json::parse(R"({"lanes": {"w": {"queue_wait_us": 5, "run_time_us": {"p50": "slow", "p99": 12}}}})");
  CHECK(hostlet::ctl::stats_text(lanes).find("  w         0            0            0           12\n") != std::string::npos);
  // An event whose time is not a number, or is out of range, is put at the epoch.
  CHECK(hostlet::ctl::event_line(json::parse(R"({"time": "soon", "source": "s", "type": "t"})")) ==
        "1970-01-01T00:00:00.000Z s t");
  CHECK(hostlet::ctl::event_line(json::parse(R"({"time": 1e300, "source": "s", "type": "t"})")) ==
        "1970-01-01T00:00:00.000Z s t");
  CHECK(hostlet::ctl::event_line(json::parse(R"({"time": -5, "source": 1, "type": null})")) ==
        "1970-01-01T00:00:00.000Z 1 null");
  CHECK(hostlet::ctl::event_line(json::parse("[1]")) == "1970-01-01T00:00:00.000Z null null");
  CHECK(hostlet::ctl::event_line(json::parse(R"({"source": "a\nb", "type": "x y"})")) ==
        "1970-01-01T00:00:00.000Z \"a\\nb\" \"x y\"");
  // The readers themselves.
  json o = json::parse(R"({"n": 2.5, "s": "x", "t": true, "f": "true"})");
  CHECK(hostlet::ctl::field(o, "n") == 2.5);
  CHECK(hostlet::ctl::field(o, "missing").is_null());
  CHECK(hostlet::ctl::field(json::parse("[1]"), "n").is_null());
  CHECK(hostlet::ctl::number(hostlet::ctl::field(o, "s")) == 0);
  CHECK(hostlet::ctl::flag(hostlet::ctl::field(o, "t")));
  CHECK_FALSE(hostlet::ctl::flag(hostlet::ctl::field(o, "f")));
  CHECK(hostlet::ctl::text(hostlet::ctl::field(o, "n")).empty());
  CHECK(hostlet::ctl::count_text(hostlet::ctl::field(o, "missing")) == "0");
}
