// Fuzz target: hostlet-ctl's reading of the agent's replies (ctl/print.cpp:
// the status, plugins, describe and stats printers, streamed event lines,
// attributes, the hello line). The input is a reply line as the agent would
// send it; hostlet-ctl checks its nesting (control::check_line) and parses
// it, and then, whatever the JSON holds (keys missing, types changed, as
// from an agent of another version), every printer returns without throwing
// or aborting. stats_text keeps its lines under 100 columns when the names
// in it are short, and an event line is one line.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "control_protocol.hpp"
#include "fuzz_support.hpp"
#include "hello.hpp"
#include "print.hpp"

using nlohmann::json;
namespace ctl = hostlet::ctl;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // The printers write to stdout; what they write is not looked at here.
  if (!freopen("/dev/null", "w", stdout)) return 1;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view line(reinterpret_cast<const char*>(data), size);
  (void)ctl::read_hello(std::string(line));
  if (!hostlet::control::check_line(line, hostlet::control::kMaxReplyDepth).empty()) return 0;
  json reply = json::parse(line, nullptr, false);
  if (reply.is_discarded()) return 0;
  const json& d = ctl::field(reply, "data");
  try {
    ctl::print_status(d);
    ctl::print_plugins(d);
    ctl::print_describe(d);
    ctl::print_stats(d);
    ctl::print_attrs(ctl::field(reply, "attrs"), "  ");
    std::string ev = ctl::event_line(ctl::field(reply, "event"));
    // attr_value_text quotes what holds a newline: an event is one line.
    hostlet::fuzz::check(ev.find('\n') == std::string::npos);
    for (const json* v : std::initializer_list<const json*>{&reply, &d}) {
      (void)ctl::stats_text(*v);
      (void)ctl::event_line(*v);
    }
  } catch (const json::exception&) {
    hostlet::fuzz::check(false);  // a printer threw: hostlet-ctl would die on this reply
  }
  return 0;
}
