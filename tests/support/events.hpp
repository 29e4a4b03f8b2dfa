// `hostlet-ctl --json events --type TYPE` running in the background, for
// end-to-end tests that wait for events (header-only: needs nlohmann/json).
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "support.hpp"

namespace hostlet::test {

class EventStream {
 public:
  EventStream(Agent& a, const std::string& type)
      : p_({env_path("HOSTLET_CTL"), "-s", a.control_socket(), "--timeout", "0", "--json", "events", "--type", type}) {
    REQUIRE(wait_until([&] { return p_.out().find("\"streaming\"") != std::string::npos; }));
  }
  // Every event received so far, as {"id","time","source","type","attrs"}.
  std::vector<nlohmann::json> events() {
    std::vector<nlohmann::json> out;
    std::istringstream in(p_.out());
    std::string line;
    while (std::getline(in, line)) {
      nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_discarded() && j.contains("event")) out.push_back(j["event"]);
    }
    return out;
  }
  // The first event satisfying pred, waiting up to timeout.
  std::optional<nlohmann::json> wait_for(const std::function<bool(const nlohmann::json&)>& pred,
                                         std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::optional<nlohmann::json> found;
    wait_until(
        [&] {
          for (auto& e : events())
            if (pred(e)) {
              found = e;
              return true;
            }
          return false;
        },
        timeout);
    return found;
  }

 private:
  Process p_;
};

}  // namespace hostlet::test
