#include "e2e.hpp"

#include <catch2/catch.hpp>

namespace hostlet::test {

std::string fixture(const std::string& name) { return env_path("HOSTLET_TEST_PLUGINS") + "/" + name + ".so"; }

std::string base_config(const std::string& extra_plugins, const std::string& rules, const std::string& agent_extra) {
  return "agent: {control_socket: \"@DIR@/control.sock\", log_level: debug" + agent_extra + "}\n"
         "plugins:\n"
         "  - {name: w, plugin: " + fixture("worker_v1") + ", max_inflight: 2, max_queue: 64}\n" +
         extra_plugins + (rules.empty() ? "" : "rules:\n" + rules);
}

nlohmann::json ctl_json(Agent& a, std::vector<std::string> args) {
  args.insert(args.begin(), "--json");
  Run r = a.ctl(args);
  INFO("hostlet-ctl " << args[1] << " stderr: " << r.err << " stdout: " << r.out);
  nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
  REQUIRE_FALSE(j.is_discarded());
  return j;
}

}  // namespace hostlet::test
