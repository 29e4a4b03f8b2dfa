// procinfo: /proc as two offloaded actions and a timed event, in C++20 coroutines (see the SDK's README.md).
#include <hostlet/task.hpp>
#include <fstream>
using hostlet::Attrs, hostlet::Call, hostlet::Error, hostlet::Task;
static Attrs fields(const std::string& path, const std::vector<std::string>& keys) {  // pool thread: "Key:  value"s
  std::ifstream in(path);
  if (!in) throw Error(-ENOENT, "cannot read " + path);
  Attrs out;
  for (std::string line; std::getline(in, line);)
    for (const auto& k : keys)
      if (line.rfind(k + ":", 0) == 0) out.emplace_back(k, line.substr(line.find_first_not_of(" \t", k.size() + 1)));
  if (out.size() < keys.size()) throw Error(-ENOENT, "no field '" + keys.back() + "' in " + path);
  return out;
}
struct ProcInfo final : hostlet::Plugin {
  explicit ProcInfo(hostlet::Host& h) : Plugin(h), every_(h.integer("interval")) {
    h.action("process", [this](Call call) -> Task {  // pid=N: its Name and State
      std::string pid = call.require("pid");
      if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos)
        throw Error(-EINVAL, "pid must be a number, not '" + pid + "'");
      auto read = [pid] { return fields("/proc/" + pid + "/status", {"Name", "State"}); };  // named: GCC 12, task.hpp
      call.ok(co_await host().offload(read));
    });
    h.action("meminfo", [this](Call call) -> Task {  // key=MemFree: that line's value
      auto read = [key = call.require("key")] { return fields("/proc/meminfo", {key}); };
      call.ok(co_await host().offload(read));
    });
  }
  int start() override { if (every_.count()) tick(); return 0; }
  Task tick() {  // every interval, until the instance stops (sleep then throws -ESHUTDOWN, ending the loop)
    for (auto read = [] { return fields("/proc/meminfo", {"MemAvailable"}); };;) {
      co_await host().sleep(every_);
      host().publish("memory", co_await host().offload(read));
    }
  }
  std::chrono::milliseconds every_;
};
const hostlet_config_key kConfig[] = {{"interval", HOSTLET_CONFIG_DURATION, "10s", "publish memory this often; 0: never",
                                       0, 86400000, 0}, {nullptr, HOSTLET_CONFIG_STRING, nullptr, nullptr, 0, 0, 0}};
HOSTLET_CPP_PLUGIN(ProcInfo, "procinfo", "1.0", "/proc as actions and a memory event", kConfig, nullptr, nullptr)
