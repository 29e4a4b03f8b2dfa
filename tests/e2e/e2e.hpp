// What the agent's end-to-end tests share: the fixture plugins, a config with
// the worker fixture, and hostlet-ctl --json as a function.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support.hpp"

namespace hostlet::test {

// Path of a fixture plugin built in tests/plugins/.
std::string fixture(const std::string& name);

// An agent config: control socket in the test's directory, log level debug,
// instance `w` of the worker fixture (max_inflight 2, max_queue 64), then
// `extra_plugins` (YAML list items), `rules` (under rules:) and `agent_extra`
// (", key: value" pairs added to the agent section).
std::string base_config(const std::string& extra_plugins = "", const std::string& rules = "",
                        const std::string& agent_extra = "");

// Runs hostlet-ctl --json ARGS against the agent and returns its reply (the
// test fails when stdout is not JSON).
nlohmann::json ctl_json(Agent& a, std::vector<std::string> args);

}  // namespace hostlet::test
