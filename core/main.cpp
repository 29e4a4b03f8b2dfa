// hostlet: the agent daemon. See README.md for the command line and config.
#include <cstdio>
#include <cstring>
#include <string>

#include "agent.hpp"
#include "log.hpp"
#include "version.h"

namespace {
void usage(FILE* f) {
  fprintf(f,
          "usage: hostlet [-c FILE] [--check] [--log-level LEVEL]\n"
          "       hostlet --version | --help\n"
          "\n"
          "Runs the hostlet agent in the foreground until SIGINT or SIGTERM.\n"
          "\n"
          "  -c, --config FILE     the YAML config (default: the embedded etc/hostlet.yaml)\n"
          "      --check           validate the config, load every plugin and let it check its\n"
          "                        section, then exit: 0 when valid, 1 with FILE:LINE:COLUMN errors\n"
          "      --log-level LEVEL error, warn, info or debug (overrides agent.log_level)\n"
          "      --version         print the version and the plugin ABI\n"
          "  -h, --help            this text\n"
          "\n"
          "Exit status: 0 clean stop, 1 config or start-up error, 2 shutdown deadline passed\n"
          "with offloaded work still running, 3 a second signal during shutdown (exited at\n"
          "once), 64 bad command line.\n");
}
}  // namespace

int main(int argc, char** argv) {
  hostlet::AgentOptions opts;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto value = [&](const char* what) -> const char* {
      if (i + 1 >= argc) {
        fprintf(stderr, "hostlet: %s needs a value\n", what);
        exit(hostlet::kExitUsage);
      }
      return argv[++i];
    };
    if (a == "-c" || a == "--config") {
      opts.config_path = value("-c");
    } else if (a.rfind("--config=", 0) == 0) {
      opts.config_path = a.substr(9);
    } else if (a == "--check") {
      opts.check_only = true;
    } else if (a == "--log-level" || a.rfind("--log-level=", 0) == 0) {
      std::string v = a == "--log-level" ? value("--log-level") : a.substr(12);
      hostlet::Level l;
      if (!hostlet::parse_log_level(v, l)) {
        fprintf(stderr, "hostlet: unknown log level '%s' (error, warn, info, debug)\n", v.c_str());
        return hostlet::kExitUsage;
      }
      opts.log_level = l;
    } else if (a == "--version") {
      printf("hostlet %s (plugin ABI %d.%d)\n", HOSTLET_VERSION, HOSTLET_ABI_MAJOR, HOSTLET_ABI_MINOR);
      return 0;
    } else if (a == "-h" || a == "--help") {
      usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "hostlet: unknown argument '%s'\n", a.c_str());
      usage(stderr);
      return hostlet::kExitUsage;
    }
  }
  hostlet::detect_journal();
  int status;
  {
    hostlet::Agent agent(opts);
    status = opts.check_only ? agent.check() : agent.run();
  }
  hostlet::log_flush_repeats();
  return status;
}
