// hostlet-ctl's human-readable output of the agent's replies (--json prints
// them as received instead).
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace hostlet::ctl {

// Each takes the `data` of an ok reply (print_event: one streamed event).
void print_status(const nlohmann::json& data);
void print_plugins(const nlohmann::json& data);
void print_describe(const nlohmann::json& data);
void print_stats(const nlohmann::json& data);
// What print_stats prints: sections that fit 100 columns, one-token headers.
std::string stats_text(const nlohmann::json& data);
// --no-headers: tables without their header row.
void set_headers(bool on);
void print_event(const nlohmann::json& event);
// One streamed event as a line, times in UTC as in the agent's log:
// 2026-12-02T18:26:25.123Z SOURCE TYPE KEY=VALUE..., where a value (and a
// source or type) that is empty or holds a space, a control character, '"',
// '\' or '=' is written as a JSON string, so that the line splits back into
// what was sent.
std::string event_line(const nlohmann::json& event);
// A value as event_line writes it.
std::string attr_value_text(const std::string& value);
// `KEY=VALUE` lines of an attrs object, each after `indent`.
void print_attrs(const nlohmann::json& attrs, const char* indent);
// An uptime as people read it: "42s", "4m 12s", "3h 05m", "3d 2h".
std::string duration_text(double seconds);
// A JSON value as text: strings without quotes, everything else as JSON.
std::string scalar(const nlohmann::json& v);

// Readers of a reply that never throw or abort: a reply from an agent of
// another version (a key missing, a type changed) prints as 0, "" or "-"
// instead of killing hostlet-ctl. (nlohmann's const operator[] asserts on a
// missing key and throws on a non-object.) The fuzz target ctl_reply feeds
// every printer arbitrary JSON.
// The member `key` of `o`, or null when `o` is not an object or lacks it.
const nlohmann::json& field(const nlohmann::json& o, std::string_view key);
double number(const nlohmann::json& v);       // a finite number, else 0
bool flag(const nlohmann::json& v);           // true only for `true`
std::string text(const nlohmann::json& v);    // a string, else ""
std::string count_text(const nlohmann::json& v);  // scalar(), "0" for null

}  // namespace hostlet::ctl
