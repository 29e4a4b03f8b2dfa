// The agent's own metrics (every exposition starts with them) and its health
// (hostlet_host_api.agent_health, the prometheus plugin's /health).
#pragma once

#include <cstdint>

#include "instance.hpp"  // AgentHealth

namespace hostlet {

class Agent;
class MetricsWriter;

void write_agent_metrics(Agent& agent, MetricsWriter& w);
// Healthy while the loop's lateness of the last 5-10 s is under max_lag_ms
// and every instance is started and reports no "failed" health.
AgentHealth agent_health(Agent& agent, uint64_t max_lag_ms);

}  // namespace hostlet
