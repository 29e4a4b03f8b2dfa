#include "hello.hpp"

namespace hostlet::ctl {

using json = nlohmann::json;

json hello_request(const std::string& ctl_version) {
  return json{{"id", 0}, {"cmd", "hello"}, {"client", "hostlet-ctl"}, {"version", ctl_version}};
}

Hello read_hello(const std::string& line) {
  Hello h;
  h.message = line;
  json j = json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return h;
  auto str = [&j](const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  const auto ok_it = j.find("ok");  // not j.value(): a non-boolean "ok" would throw
  const bool ok = ok_it != j.end() && ok_it->is_boolean() && ok_it->get<bool>();
  const bool has_id = j.contains("id") && j["id"] == 0;
  if (ok && has_id && str("server") == "hostlet") {
    h.kind = Hello::agent;
    h.version = str("version");
    h.access = str("access");
    h.protocol = j.contains("protocol") && j["protocol"].is_number_integer() ? j["protocol"].get<int>() : 0;
    h.message.clear();
    return h;
  }
  const std::string error = str("error");
  if (!ok && has_id && error.rfind("unknown command 'hello'", 0) == 0) {
    h.kind = Hello::older_agent;
    h.message.clear();
    return h;
  }
  // The agent's unsolicited answers (a refused peer, too many connections)
  // carry no id; an error with our id is some other server's.
  if (!ok && !j.contains("id") && !error.empty()) {
    h.kind = Hello::refused;
    h.message = error;
  }
  return h;
}

std::string protocol_note(const Hello& h, int ours) {
  if (h.kind == Hello::older_agent)
    return "the agent predates hostlet-ctl's protocol " + std::to_string(ours) + "; newer options may be refused";
  if (h.kind != Hello::agent || h.protocol == ours) return {};
  return "the agent " + (h.version.empty() ? std::string() : h.version + " ") + "speaks control protocol " +
         std::to_string(h.protocol) + ", this hostlet-ctl " + std::to_string(ours) +
         (h.protocol > ours ? "; some of its replies may not be understood" : "; newer options may be refused");
}

}  // namespace hostlet::ctl
