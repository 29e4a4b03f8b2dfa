// hostlet: the agent daemon. See README.md for the command line and config.
#include <dirent.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "agent.hpp"
#include "log.hpp"
#include "version.h"

#ifndef HOSTLET_SYSCONFDIR
#define HOSTLET_SYSCONFDIR "/usr/local/etc"
#endif

namespace {
// The file read without -c: $HOSTLET_DEFAULT_CONFIG (for tests and unusual
// layouts), else <sysconfdir>/hostlet/hostlet.yaml. Empty when it does not
// exist: then the embedded demo runs.
std::string default_config_file() {
  const char* env = getenv("HOSTLET_DEFAULT_CONFIG");
  std::string path = env && *env ? env : HOSTLET_SYSCONFDIR "/hostlet/hostlet.yaml";
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? path : std::string();
}

void usage(FILE* f) {
  fprintf(f,
          "usage: hostlet [-c FILE | --demo] [--check] [--log-level LEVEL]\n"
          "       hostlet --version | --help\n"
          "\n"
          "Runs the hostlet agent in the foreground until SIGINT or SIGTERM.\n"
          "\n"
          "  -c, --config FILE     the YAML config (default: " HOSTLET_SYSCONFDIR "/hostlet/hostlet.yaml\n"
          "                        when it exists, else the embedded demo)\n"
          "      --demo            run the embedded demo config even when that file exists\n"
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
// Descriptors the agent inherited from whoever started it (a shell's, a test
// harness's, a supervisor's) must not reach the processes it spawns (the exec
// plugin's children): every fd above stderr becomes close-on-exec before
// anything else runs. The agent itself keeps using them; the socket-activated
// ones (LISTEN_FDS) are adopted by the fd store, which marks them so as well.
void cloexec_inherited_fds() {
  if (close_range(3, ~0u, CLOSE_RANGE_CLOEXEC) == 0) return;
  DIR* d = opendir("/proc/self/fd");  // kernels before 5.11
  if (!d) return;
  const int own = dirfd(d);
  while (const dirent* e = readdir(d)) {
    char* end = nullptr;
    const long fd = strtol(e->d_name, &end, 10);
    if (*end != '\0' || end == e->d_name || fd < 3 || fd == own) continue;
    const int flags = fcntl(static_cast<int>(fd), F_GETFD);
    if (flags >= 0) fcntl(static_cast<int>(fd), F_SETFD, flags | FD_CLOEXEC);
  }
  closedir(d);
}
}  // namespace

int main(int argc, char** argv) {
  cloexec_inherited_fds();
  hostlet::AgentOptions opts;
  bool config_given = false, demo = false;
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
      config_given = true;
    } else if (a.rfind("--config=", 0) == 0) {
      opts.config_path = a.substr(9);
      config_given = true;
    } else if (a == "--demo") {
      demo = true;
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
  if (config_given && demo) {
    fprintf(stderr, "hostlet: -c and --demo exclude each other\n");
    return hostlet::kExitUsage;
  }
  if (!config_given && !demo) opts.config_path = default_config_file();  // empty: the demo
  hostlet::detect_journal();
  int status;
  {
    hostlet::Agent agent(opts);
    status = opts.check_only ? agent.check() : agent.run();
  }
  hostlet::log_flush_repeats();
  return status;
}
