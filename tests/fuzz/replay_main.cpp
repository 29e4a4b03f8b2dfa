// A main() for a libFuzzer target, so that its corpora replay as an ordinary
// test in every build (gcc, plain, ASan) without libFuzzer:
//
//   <name>_replay [-timeout=SECONDS] DIR_OR_FILE...
//
// calls LLVMFuzzerInitialize (when the target defines one), then
// LLVMFuzzerTestOneInput once per regular file, directories read one level
// deep in name order, hidden files skipped. The targets trap on a broken
// promise, so a failing input ends the run with a signal; this prints the
// input's name first. An input that runs longer than -timeout (default 10 s)
// is a hang: the run fails naming it, as libFuzzer would. A missing
// directory is an error, so a deleted corpus cannot pass unnoticed.
#include <signal.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define HOSTLET_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define HOSTLET_SANITIZED 1
#endif
#endif
#ifdef HOSTLET_SANITIZED
#include <sanitizer/common_interface_defs.h>
#endif

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" __attribute__((weak)) int LLVMFuzzerInitialize(int* argc, char*** argv);

namespace {

// The input being run, for the handlers below (written before each run).
char g_current[4096] = "(none)";
volatile sig_atomic_t g_named = 0;

void say(const char* s) { (void)!::write(STDERR_FILENO, s, strlen(s)); }

void name_input(const char* what) {
  if (g_named) return;
  g_named = 1;
  say("replay: ");
  say(what);
  say(" on input ");
  say(g_current);
  say("\n");
}

[[noreturn]] void on_alarm(int) {
  name_input("TIMEOUT (a hang)");
  _exit(70);
}

void on_crash(int sig) {
  name_input("crashed");
  signal(sig, SIG_DFL);
  raise(sig);
}

// A trap (a broken promise), an abort and, without a sanitizer to report
// them, memory faults name the input; a sanitizer's report ends with it.
void install_handlers() {
  signal(SIGALRM, on_alarm);
  for (int sig : {SIGILL, SIGTRAP, SIGABRT}) signal(sig, on_crash);
#ifdef HOSTLET_SANITIZED
  __sanitizer_set_death_callback([] { name_input("sanitizer finding"); });
#else
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE}) signal(sig, on_crash);
#endif
}

bool read_file(const std::filesystem::path& p, std::string& out) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return false;
  out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return !in.bad();
}

// The inputs `arg` names: itself if a file, its regular non-hidden files if a directory.
bool collect(const char* arg, std::vector<std::filesystem::path>& inputs) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path p(arg);
  if (fs::is_regular_file(p, ec)) {
    inputs.push_back(p);
    return true;
  }
  if (!fs::is_directory(p, ec)) {
    fprintf(stderr, "replay: %s: no such file or directory\n", arg);
    return false;
  }
  std::vector<fs::path> found;
  for (const auto& e : fs::directory_iterator(p, ec))
    if (e.is_regular_file() && e.path().filename().string().front() != '.') found.push_back(e.path());
  if (ec) {
    fprintf(stderr, "replay: %s: %s\n", arg, ec.message().c_str());
    return false;
  }
  std::sort(found.begin(), found.end());
  inputs.insert(inputs.end(), found.begin(), found.end());
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
  unsigned timeout_s = 10;
  std::vector<std::filesystem::path> inputs;
  bool ok = true;
  for (int i = 1; i < argc; i++) {
    if (strncmp(argv[i], "-timeout=", 9) == 0) timeout_s = static_cast<unsigned>(std::strtoul(argv[i] + 9, nullptr, 10));
    else ok = collect(argv[i], inputs) && ok;
  }
  if (!ok) return 2;
  if (inputs.empty()) {
    fprintf(stderr, "usage: %s [-timeout=SECONDS] DIR_OR_FILE... (no inputs found)\n", argv[0]);
    return 2;
  }
  install_handlers();

  double slowest_ms = 0;
  std::string slowest;
  std::string data;
  for (const auto& p : inputs) {
    if (!read_file(p, data)) {
      fprintf(stderr, "replay: cannot read %s\n", p.c_str());
      return 2;
    }
    snprintf(g_current, sizeof g_current, "%s", p.c_str());
    alarm(timeout_s);
    auto t0 = std::chrono::steady_clock::now();
    // A copy the size of the input exactly, so ASan sees a read past its end.
    std::vector<uint8_t> buf(data.begin(), data.end());
    LLVMFuzzerTestOneInput(buf.data(), buf.size());
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    alarm(0);
    if (ms > slowest_ms) {
      slowest_ms = ms;
      slowest = p.string();
    }
  }
  printf("replayed %zu inputs without a finding; slowest %.1f ms (%s)\n", inputs.size(), slowest_ms, slowest.c_str());
  return 0;
}
