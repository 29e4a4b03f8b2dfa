// Tests for core/config_yaml.cpp: hostile YAML loads or fails with a location,
// quickly. Each hostile input is parsed in a child process with a deadline,
// so that a regression (yaml-cpp 0.7's LoadAll loop, libyaml's quadratic
// scan) fails the test instead of hanging the suite or eating the machine.
#include "config_yaml.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "config.hpp"
#include "config_support.hpp"

using namespace hostlet;

namespace {

// Generous: each of these takes milliseconds; a regression takes forever.
constexpr auto kDeadline = std::chrono::seconds(20);

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

struct ChildResult {
  bool finished = false;  // false: killed at the deadline
  bool ok = false;        // what the call returned
  std::string output;     // one error line each, as --check prints them
};

// Runs `fn` (which returns whether it succeeded and appends its errors) in a
// child process; the parent reads its output until it exits or the deadline.
template <class Fn>
ChildResult run_in_child(Fn fn) {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    if (!kSanitized) {  // ASan reserves terabytes of address space; the deadline still holds
      const rlimit mem{1ul << 30, 1ul << 30};
      setrlimit(RLIMIT_AS, &mem);
    }
    ConfigErrors errs;
    const bool ok = fn(errs);
    std::string out;
    for (const ConfigError& e : errs) out += e.str() + "\n";
    for (size_t off = 0; off < out.size();) {
      const ssize_t n = write(fds[1], out.data() + off, out.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    _exit(ok ? 0 : 1);
  }
  close(fds[1]);
  ChildResult r;
  const auto deadline = std::chrono::steady_clock::now() + kDeadline;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fds[0], POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[4096];
    const ssize_t n = read(fds[0], buf, sizeof buf);
    if (n <= 0) {
      r.finished = true;  // the child closed its end: it exited (or is about to)
      break;
    }
    r.output.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  if (!r.finished) kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  r.finished = r.finished && WIFEXITED(status);
  r.ok = r.finished && WEXITSTATUS(status) == 0;
  return r;
}

ChildResult parse_in_child(const std::string& text) {
  return run_in_child([&](ConfigErrors& errs) {
    Config c;
    return parse_config(text, "test.yaml", c, errs);
  });
}

ChildResult load_file_in_child(const std::string& path) {
  return run_in_child([&](ConfigErrors& errs) {
    Config c;
    return load_config_file(path, c, errs);
  });
}

// The one error a hostile text must produce, checked to end in time.
std::string only_error_in_time(const std::string& text) {
  const ChildResult r = parse_in_child(text);
  REQUIRE(r.finished);
  CHECK_FALSE(r.ok);
  CAPTURE(r.output);
  REQUIRE(std::count(r.output.begin(), r.output.end(), '\n') == 1);
  return r.output.substr(0, r.output.size() - 1);
}

std::string repeat(const std::string& s, size_t times) {
  std::string out;
  out.reserve(s.size() * times);
  for (size_t i = 0; i < times; ++i) out += s;
  return out;
}

}  // namespace

TEST_CASE("config_yaml: the 55-byte config that hung yaml-cpp's LoadAll fails at 1:1") {
  // Issue 14: `hostlet --check` ran 30 s at 2.4 GB on this file.
  const std::string text = ",<: t: {condrol_socket.sock, mles:\n  - on*aeimit: 10/s:";
  REQUIRE(text.size() == 55);
  CHECK(only_error_in_time(text) ==
        "test.yaml:1:1: did not find expected node content (while parsing a block node)");
}

TEST_CASE("config_yaml: every text that made LoadAll loop is an error with its location") {
  // A top-level ',' after or without a node leaves yaml-cpp's document parser
  // without progress (jbeder/yaml-cpp#1040, the Falco report behind PR #1319).
  CHECK(only_error_in_time(",") ==
        "test.yaml:1:1: did not find expected node content (while parsing a block node)");
  CHECK(only_error_in_time(",foo") ==
        "test.yaml:1:1: did not find expected node content (while parsing a block node)");
  CHECK(only_error_in_time("\"foo\",") == "test.yaml:1:6: did not find expected <document start>");
  CHECK(only_error_in_time("- a\n,") ==
        "test.yaml:2:1: did not find expected '-' indicator (while parsing a block collection that "
        "starts at line 1, column 1)");
  CHECK(only_error_in_time("- macro: exclude_commands\n  condition:\n    (user.uid = 1001 and proc.args in (\n"
                           "\"/usr/local/bin/script_metrics.sh\",\n    \"-c rsync\"\n    )  )  \n") ==
        "test.yaml:4:35: could not find expected ':' (while scanning a simple key that starts at line 4, "
        "column 1)");
}

TEST_CASE("config_yaml: text yaml-cpp 0.7 takes for YAML but is not is an error") {
  CHECK(only_error_in_time("\"foo\" \"bar\"") == "test.yaml:1:7: did not find expected <document start>");
  CHECK(only_error_in_time("agent: {}\n\"x\",\n") ==
        "test.yaml:2:4: could not find expected ':' (while scanning a simple key that starts at line 2, column 1)");
}

TEST_CASE("config_yaml: deep nesting stops at 64 levels, where it passes the limit") {
  // Without the limit libyaml alone needs minutes for 100 000 '[' (its
  // simple-key scan is quadratic in flow depth) and yaml-cpp recurses.
  CHECK(only_error_in_time(std::string(100000, '[')) ==
        "test.yaml:1:65: nested more than 64 sequences and mappings deep (the limit for a config file)");
  CHECK(only_error_in_time(std::string(100000, '{')) ==
        "test.yaml:1:65: nested more than 64 sequences and mappings deep (the limit for a config file)");
  CHECK(only_error_in_time(repeat("- ", 65) + "x\n") ==
        "test.yaml:1:129: nested more than 64 sequences and mappings deep (the limit for a config file)");
  // 64 levels are fine: the limit is there, not lower.
  YAML::Node n;
  ConfigErrors errs;
  CHECK(load_yaml_document(std::string(64, '[') + std::string(64, ']'), "f", n, errs));
  CHECK(errs.empty());
}

TEST_CASE("config_yaml: more than 20000 nodes is an error at the first one past the limit") {
  // The mapping, the key and the sequence are 3; item 19998 (0-based) is the 20001st node.
  const std::string text = "plugins: [" + repeat("a, ", 100000) + "]\n";
  CHECK(only_error_in_time(text) == "test.yaml:1:" + std::to_string(11 + 3 * 19997) +
                                        ": more than 20000 values, sequences and mappings (the limit for a "
                                        "config file)");
  // An alias is one node: a billion laughs loads as 100 of them and nothing expands it.
  std::string laughs = "plugins:\n  - name: p\n    plugin: p\n    config:\n      a: &a [x, x, x, x, x, x, x, x, x, x]\n";
  for (char c = 'b'; c <= 'i'; ++c)
    laughs += std::string("      ") + c + ": &" + c + " [" + repeat(std::string("*") + static_cast<char>(c - 1) + ", ", 10) + "]\n";
  const ChildResult r = parse_in_child(laughs);  // 10^9 x's if anything expanded it
  REQUIRE(r.finished);
  CHECK(r.ok);
  CHECK(r.output.empty());
}

TEST_CASE("config_yaml: a text over 1 MiB is refused before any parsing") {
  CHECK(only_error_in_time("# " + std::string((1 << 20) - 1, 'x')) ==
        "test.yaml: more than 1MiB of text (the limit for a config file)");
  YAML::Node n;
  ConfigErrors errs;
  CHECK(load_yaml_document("# " + std::string((1 << 20) - 3, 'x') + "\n", "f", n, errs));  // exactly 1 MiB
  CHECK(errs.empty());
}

TEST_CASE("config_yaml: the CPU-time limit stops the check with the place it reached") {
  YamlLimits limits;
  limits.max_cpu = std::chrono::milliseconds(0);
  YAML::Node n;
  ConfigErrors errs;
  CHECK_FALSE(load_yaml_document("a: 1\n", "f.yaml", n, errs, limits));
  REQUIRE(errs.size() == 1);
  CHECK(errs[0].str() == "f.yaml:1:1: reading the YAML took more than 0ms of CPU time; stopped here");
  CHECK(n.IsNull());
}

TEST_CASE("config_yaml: a large config within every limit loads") {
  std::string text = "rules:\n";
  for (int i = 0; i < 1300; ++i)  // 15 nodes each: 19 501
    text += "  - {on: {type: \"t" + std::to_string(i) + ".*\", attrs: {name: \"vm*\"}}, do: x.y, with: {a: \"${name}\"}}\n";
  const ChildResult r = parse_in_child(text);
  REQUIRE(r.finished);
  CAPTURE(r.output.substr(0, 500));
  CHECK(r.ok);
  CHECK(r.output.empty());
}

TEST_CASE("config_yaml: a second document is reported at its first node and the first still loads") {
  YAML::Node n;
  ConfigErrors errs;
  CHECK(load_yaml_document("a: 1\n--- b\n", "f", n, errs));
  REQUIRE(errs.size() == 1);
  CHECK(errs[0].str() == "f:2:5: expected one YAML document, found another");
  CHECK(n["a"].as<int>() == 1);
  // What follows the second document's start is not checked: its ',' would be an error.
  errs.clear();
  CHECK(load_yaml_document("a: 1\n---\n,\n", "f", n, errs));
  REQUIRE(errs.size() == 1);
  CHECK(errs[0].str() == "f:2:1: expected one YAML document, found another");
}

TEST_CASE("config_yaml: bad UTF-8 and raw control characters are reader errors at their byte") {
  CHECK(only_error_in_time("a: 1\nb: \xff\n") == "test.yaml:2:4: invalid leading UTF-8 octet (0xFF)");
  CHECK(only_error_in_time(std::string("a: 1\nb: x\0y\n", 12)) ==
        "test.yaml:2:5: control characters are not allowed (0x00)");
  CHECK(only_error_in_time("a: \x1b[2J\n") == "test.yaml:1:4: control characters are not allowed (0x1B)");
}

TEST_CASE("config_yaml: load_config_file refuses a FIFO, a device and an oversized file without blocking") {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    ("hostlet-config-yaml-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const std::string fifo = (dir / "fifo").string();
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  ChildResult r = load_file_in_child(fifo);  // no writer: a blocking open would never return
  REQUIRE(r.finished);
  CHECK(r.output == fifo + ": cannot read the file: not a regular file\n");

  r = load_file_in_child("/dev/zero");  // endless
  REQUIRE(r.finished);
  CHECK(r.output == "/dev/zero: cannot read the file: not a regular file\n");

  const std::string big = (dir / "big.yaml").string();
  {
    std::ofstream f(big);
    f << "# " << std::string(3 << 20, 'x') << "\n";
  }
  r = load_file_in_child(big);
  REQUIRE(r.finished);
  CHECK(r.output == big + ": more than 1MiB of text (the limit for a config file)\n");
  std::filesystem::remove_all(dir);
}
