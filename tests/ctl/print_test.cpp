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
