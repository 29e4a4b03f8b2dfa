// The control socket's protocol, shared by the agent (core/control.cpp) and
// hostlet-ctl (ctl/): the command names both sides use.
//
// A request is one JSON object on one line:
//
//   {"id": 7, "cmd": "call", "action": "virt.domain.list", "attrs": {"state": "running"}}
//
// `id` is echoed in the reply; `cmd` names the command; the other keys are
// its arguments.
#pragma once

#include <string_view>

namespace hostlet::control {

// The "cmd" of each request the agent answers.
namespace cmd {
inline constexpr std::string_view status = "status";
inline constexpr std::string_view plugins = "plugins";
inline constexpr std::string_view describe = "describe";
inline constexpr std::string_view stats = "stats";
inline constexpr std::string_view call = "call";
inline constexpr std::string_view notify = "notify";
inline constexpr std::string_view events = "events";
inline constexpr std::string_view reload = "reload";
}  // namespace cmd

}  // namespace hostlet::control
