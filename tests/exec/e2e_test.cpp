// End to end: the real agent with the exec plugin, real children, driven
// through hostlet-ctl and the control socket. Nothing is faked: the commands
// are /usr/bin programs and small shell scripts written into a temp dir,
// whose pid files let the tests check that no process is left behind.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace hostlet::test;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

json ctl_json(Agent& a, std::vector<std::string> args, std::chrono::milliseconds timeout = 60s) {
  args.insert(args.begin(), "--json");
  Run r = a.ctl(args, timeout);
  INFO("hostlet-ctl " << args[1] << " exit " << r.exit_code << " stderr: " << r.err << " stdout: " << r.out);
  json j = json::parse(r.out, nullptr, false);
  REQUIRE_FALSE(j.is_discarded());
  return j;
}

// Stops the agent with SIGTERM: exit 0, no sanitizer report, the loop closed cleanly.
void stop_clean(Agent& a) {
  auto code = a.stop();
  REQUIRE(code);
  std::string log = a.log();
  INFO(log);
  CHECK(WIFEXITED(*code));
  CHECK(WEXITSTATUS(*code) == 0);
  CHECK(log.find("Sanitizer") == std::string::npos);
  CHECK(log.find("runtime error") == std::string::npos);
  CHECK(log.find("loop did not close cleanly") == std::string::npos);
}

std::string agent_yaml(const std::string& exec_config, const std::string& agent_extra = "") {
  return "agent: {control_socket: \"@DIR@/control.sock\", log_level: debug" + agent_extra +
         "}\n"
         "plugins:\n"
         "  - name: run\n"
         "    plugin: exec\n"
         "    config:\n" +
         exec_config;
}

std::string script(TempDir& dir, const std::string& name, const std::string& body) {
  std::string path = dir.write(name, "#!/bin/sh\n" + body);
  REQUIRE(::chmod(path.c_str(), 0755) == 0);
  return path;
}

// A process that exists and is not a zombie (a zombie is dead; in a
// container its reaper may be slow to collect it).
bool alive(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(f, line)) return false;
  auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
}

pid_t read_pid(const std::string& path) {
  std::string text = read_file(path);
  return text.empty() ? 0 : static_cast<pid_t>(std::stol(text));
}

// VmRSS or VmHWM of a process, in KiB.
long status_kib(pid_t pid, const std::string& field) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(field + ":", 0) == 0) return std::stol(line.substr(field.size() + 1));
  return -1;
}

// One request on the control socket.
std::string call_line(int id, const std::string& action, const json& attrs = json::object()) {
  return json{{"id", id}, {"cmd", "call"}, {"action", action}, {"attrs", attrs}}.dump();
}

// One call over the control socket, its answer parsed.
json call_json(Agent& a, const std::string& action, const json& attrs = json::object()) {
  LineClient c(a.control_socket());
  REQUIRE(c.send_line(call_line(1, action, attrs)));
  auto line = c.recv_line(60s);
  REQUIRE(line);
  return json::parse(*line);
}

// Waits for `path` to hold a pid (written by a command that started).
pid_t wait_pid_file(const std::string& path) {
  pid_t pid = 0;
  wait_until([&] { return (pid = read_pid(path)) > 0; }, 20s);
  return pid;
}

}  // namespace

TEST_CASE("exec: hostile attributes arrive as single literal arguments, env is clean", "[exec][e2e]") {
  TempDir dir;
  Agent a(dir, agent_yaml("      commands:\n"
                          "        args:\n"
                          "          argv: [printf, \"%s\\\\0\", \"${a}\", \"${b}\", \"${c}\", \"${d}\", \"${e}\", "
                          "\"${f}\", \"x=${a}/${e}\", \"$${a}\", \"literal $(id) $$\"]\n"
                          "        env:\n"
                          "          argv: [/usr/bin/env]\n"
                          "          env: {HOSTILE: \"${a}\", LC_ALL: C}\n"
                          "        cat:\n"
                          "          argv: [cat]\n"
                          "          stdin: input\n"
                          "          max_output: 1MiB\n"));
  REQUIRE(a.start());
  const std::vector<std::string> hostile{"; rm -rf /", "$(id)", "a b  c", "line1\nline2", "-n", "`id` ${a} *"};
  std::vector<std::string> args{"call", "run.args"};
  const char* names[] = {"a", "b", "c", "d", "e", "f"};
  for (size_t i = 0; i < hostile.size(); i++) args.push_back(std::string(names[i]) + "=" + hostile[i]);
  json r = ctl_json(a, args);
  INFO(r.dump());
  REQUIRE(r["ok"] == true);
  std::string expected;
  for (const auto& h : hostile) expected += h + std::string(1, '\0');
  expected += "x=; rm -rf //-n" + std::string(1, '\0') + "${a}" + std::string(1, '\0') + "literal $(id) $$" +
              std::string(1, '\0');
  CHECK(r["data"]["stdout"] == expected);  // the data keeps NULs; each item is one argument
  CHECK(r["attrs"]["exit"] == "0");
  CHECK(r["attrs"]["signal"] == "0");
  CHECK(r["attrs"]["truncated"] == "false");
  CHECK(r["attrs"]["stdout_bytes"] == std::to_string(expected.size()));

  r = ctl_json(a, {"call", "run.args", "a=only a"});
  CHECK(r["ok"] == false);
  CHECK(r["error"] == "run.args: missing attribute 'b' for argv[3]");

  // The environment is exactly the listed variables, values templated.
  r = ctl_json(a, {"call", "run.env", "a=$(id); x"});
  REQUIRE(r["ok"] == true);
  std::string env = r["attrs"]["stdout"];
  std::vector<std::string> lines;
  std::istringstream in(env);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  std::sort(lines.begin(), lines.end());
  CHECK(lines == std::vector<std::string>{"HOSTILE=$(id); x", "LC_ALL=C"});

  // stdin from an attribute, 200 KB of it, hostile bytes included.
  std::string input;
  for (int i = 0; input.size() < 200000; i++) input += "line " + std::to_string(i) + " $(id) ; `x`\n";
  r = call_json(a, "run.cat", {{"input", input}});  // too long for one argv item of hostlet-ctl
  REQUIRE(r["ok"] == true);
  CHECK(r["data"]["stdout"] == input);
  r = ctl_json(a, {"call", "run.cat"});
  CHECK(r["error"] == "run.cat: missing attribute 'input' for stdin");
  stop_clean(a);
}

TEST_CASE("exec: a non-zero exit or a signal is an error quoting stderr's last line", "[exec][e2e]") {
  TempDir dir;
  script(dir, "fail.sh", "echo progress\necho 'first problem' >&2\necho \"disk full on $1\" >&2\necho >&2\nexit 3\n");
  script(dir, "segv.sh", "echo dying >&2\nkill -SEGV $$\n");
  Agent a(dir, agent_yaml("      commands:\n"
                          "        fail: {argv: [\"@DIR@/fail.sh\", \"${vol}\"]}\n"
                          "        segv: {argv: [\"@DIR@/segv.sh\"]}\n"
                          "        quiet: {argv: [/bin/false]}\n"));
  REQUIRE(a.start());
  json r = ctl_json(a, {"call", "run.fail", "vol=vg0"});
  CHECK(r["ok"] == false);
  CHECK(r["error"] == "run.fail: exit 3: disk full on vg0");
  CHECK(ctl_json(a, {"call", "run.segv"})["error"] == "run.segv: killed by SIGSEGV: dying");
  CHECK(ctl_json(a, {"call", "run.quiet"})["error"] == "run.quiet: exit 1");
  Run human = a.ctl({"call", "run.fail", "vol=x"});
  CHECK(human.exit_code == 1);
  CHECK(human.err.find("run.fail: exit 3: disk full on x") != std::string::npos);
  stop_clean(a);
}

TEST_CASE("exec: a timeout kills a process that ignores SIGTERM, and its child", "[exec][e2e]") {
  TempDir dir;
  Agent a(dir, agent_yaml("      commands:\n"
                          "        stubborn:\n"
                          "          argv: [/bin/sh, -c, \"trap '' TERM; sleep 100 & echo $! > @DIR@/bg.pid; "
                          "echo $$ > @DIR@/sh.pid; echo ignoring TERM >&2; sleep 100; echo never\"]\n"
                          "          timeout: 500ms\n"
                          "          kill_grace: 700ms\n"));
  REQUIRE(a.start());
  json r = ctl_json(a, {"call", "run.stubborn"});
  INFO(r.dump());
  CHECK(r["ok"] == false);
  CHECK(r["error"] ==
        "run.stubborn: timed out after 500ms (SIGTERM, then SIGKILL 700ms later; ended by SIGKILL): ignoring TERM");
  pid_t sh = read_pid(dir / "sh.pid"), bg = read_pid(dir / "bg.pid");
  REQUIRE(sh > 0);
  REQUIRE(bg > 0);
  CHECK(wait_until([&] { return !alive(sh) && !alive(bg); }, 10s));
  stop_clean(a);
}

TEST_CASE("exec: a 100 MB stdout is capped and the agent's memory stays bounded", "[exec][e2e]") {
  TempDir dir;
  Agent a(dir, agent_yaml("      commands:\n"
                          "        flood: {argv: [head, -c, \"100000000\", /dev/zero], timeout: 5m}\n"
                          "        both: {argv: [/bin/sh, -c, \"head -c 5000000 /dev/zero >&2; echo out\"], "
                          "max_output: 1000}\n",
                          ", action_timeout: 10m"));
  REQUIRE(a.start());
  const pid_t agent = a.process().pid();
  const long rss_before = status_kib(agent, "VmRSS");
  REQUIRE(rss_before > 0);
  json r = ctl_json(a, {"call", "run.flood"}, 600s);
  REQUIRE(r["ok"] == true);
  CHECK(r["attrs"]["truncated"] == "true");
  CHECK(r["attrs"]["stdout_bytes"] == "100000000");  // read to the end, not cut off
  CHECK(r["data"]["stdout"].get<std::string>() == std::string(65536, '\0'));
  const long peak = status_kib(agent, "VmHWM");
  INFO("VmRSS before " << rss_before << " KiB, VmHWM after " << peak << " KiB");
  CHECK(peak - rss_before < 48 * 1024);  // far below the 97 MiB the output would take

  r = ctl_json(a, {"call", "run.both"});
  REQUIRE(r["ok"] == true);
  CHECK(r["attrs"]["stdout"] == "out\n");
  CHECK(r["data"]["stderr"].get<std::string>().size() == 1000);
  CHECK(r["attrs"]["stderr_bytes"] == "5000000");
  CHECK(r["attrs"]["truncated"] == "true");
  stop_clean(a);
}

TEST_CASE("exec: 200 concurrent calls respect the command's and the instance's limits", "[exec][e2e]") {
  TempDir dir;
  for (const char* d : {"a", "b", "all"}) REQUIRE(::mkdir((dir / d).c_str(), 0755) == 0);
  // Each run marks itself running (per command and for the instance),
  // records how many it sees running, and unmarks itself before it exits: a
  // count can only be of processes running at that moment.
  script(dir, "conc.sh",
         "touch \"$1/$$\" \"$2/$$\"\n"
         "echo \"$(ls \"$1\" | wc -l) $(ls \"$2\" | wc -l)\" >> \"$3\"\n"
         "sleep 0.2\n"
         "rm -f \"$1/$$\" \"$2/$$\"\n"
         "echo \"$4\"\n");
  Agent a(dir, agent_yaml("      max_concurrent: 6\n"
                          "      max_queued: 200\n"
                          "      commands:\n"
                          "        a: {argv: [\"@DIR@/conc.sh\", \"@DIR@/a\", \"@DIR@/all\", \"@DIR@/counts.a\", "
                          "\"${n}\"], max_concurrent: 4}\n"
                          "        b: {argv: [\"@DIR@/conc.sh\", \"@DIR@/b\", \"@DIR@/all\", \"@DIR@/counts.b\", "
                          "\"${n}\"], max_concurrent: 4}\n",
                          ", action_timeout: 10m"));
  REQUIRE(a.start());
  const int kCalls = 200, kConns = 4;
  std::vector<LineClient> conns(kConns);
  for (auto& c : conns) REQUIRE(c.connect(a.control_socket()));
  for (int i = 0; i < kCalls; i++)
    REQUIRE(conns[i % kConns].send_line(call_line(i, i % 2 ? "run.b" : "run.a", {{"n", std::to_string(i)}})));
  std::set<int> answered;
  int failed = 0;
  for (int i = 0; i < kCalls; i++) {
    auto line = conns[i % kConns].recv_line(300s);
    REQUIRE(line);
    json r = json::parse(*line);
    INFO(*line);
    if (r["ok"] != true) {
      failed++;
      continue;
    }
    CHECK(r["attrs"]["stdout"] == std::to_string(r["id"].get<int>()) + "\n");  // its own run answered it
    answered.insert(r["id"].get<int>());
  }
  CHECK(failed == 0);
  CHECK(answered.size() == static_cast<size_t>(kCalls));

  int max_cmd = 0, max_all = 0, records = 0;
  for (const char* f : {"counts.a", "counts.b"}) {
    std::istringstream in(read_file(dir / f));
    int cmd = 0, all = 0;
    while (in >> cmd >> all) {
      records++;
      max_cmd = std::max(max_cmd, cmd);
      max_all = std::max(max_all, all);
    }
  }
  INFO("most running at once: " << max_cmd << " of one command, " << max_all << " in all");
  CHECK(records == kCalls);
  CHECK(max_cmd <= 4);
  CHECK(max_all <= 6);
  CHECK(max_all >= 2);  // they did run side by side
  stop_clean(a);
}

TEST_CASE("exec: calls beyond the limit and the queue fail at once as busy", "[exec][e2e]") {
  TempDir dir;
  Agent a(dir, agent_yaml("      max_queued: 2\n"
                          "      commands:\n"
                          "        slow: {argv: [sleep, \"1\"], max_concurrent: 1}\n"));
  REQUIRE(a.start());
  LineClient c(a.control_socket());
  for (int i = 0; i < 6; i++) REQUIRE(c.send_line(call_line(i, "run.slow")));
  int ok = 0, busy = 0;
  for (int i = 0; i < 6; i++) {
    auto line = c.recv_line(60s);
    REQUIRE(line);
    json r = json::parse(*line);
    if (r["ok"] == true) {
      ok++;
    } else {
      INFO(*line);
      CHECK(r["error"] ==
            "run.slow: busy: 1 running, 2 queued (max_concurrent 1 for the command, 16 for the instance; max_queued 2)");
      busy++;
    }
  }
  CHECK(ok == 3);
  CHECK(busy == 3);
  Run metrics = a.ctl({"metrics"});
  INFO(metrics.out);
  CHECK(metrics.out.find("hostlet_exec_busy_total{instance=\"run\"} 3") != std::string::npos);
  CHECK(metrics.out.find("hostlet_exec_running{instance=\"run\"} 0") != std::string::npos);
  CHECK(metrics.out.find("hostlet_exec_queued{instance=\"run\"} 0") != std::string::npos);
  stop_clean(a);
}

TEST_CASE("exec: a missing binary is a clear error at --check and at call time", "[exec][e2e]") {
  TempDir dir;
  Agent bad(dir, agent_yaml("      commands:\n"
                            "        gone: {argv: [/nonexistent/hostlet-test-bin, x]}\n"
                            "        nopath: {argv: [hostlet-no-such-program]}\n"));
  Run check = run({env_path("HOSTLET_BIN"), "--check", "-c", bad.config_path()});
  INFO(check.out << check.err);
  CHECK(check.exit_code == 1);
  CHECK(check.err.find("config.commands.gone.argv[0]: /nonexistent/hostlet-test-bin: No such file or directory") !=
        std::string::npos);
  CHECK(check.err.find(bad.config_path() + ":3:5: instance 'run'") != std::string::npos);

  TempDir dir2;
  Agent nopath(dir2, agent_yaml("      commands:\n"
                                "        nopath: {argv: [hostlet-no-such-program]}\n"
                                "        argz: {argx: [x]}\n"));
  check = run({env_path("HOSTLET_BIN"), "--check", "-c", nopath.config_path()});
  CHECK(check.exit_code == 1);
  CHECK(check.err.find("config.commands.argz: unknown key 'argx'; did you mean 'argv'?") != std::string::npos);

  TempDir dir5;
  Agent badname(dir5, agent_yaml("      commands:\n"
                                 "        \"a b\": {argv: [/bin/true]}\n"));
  check = run({env_path("HOSTLET_BIN"), "--check", "-c", badname.config_path()});
  CHECK(check.exit_code == 1);
  CHECK(check.err.find("config.commands.a b: a command name is part of an action name and may hold only letters, "
                       "digits, '_' and '-'") != std::string::npos);

  TempDir dir3;
  std::string prog = script(dir3, "tool.sh", "echo hi\n");
  Agent a(dir3, agent_yaml("      commands:\n"
                           "        tool: {argv: [\"@DIR@/tool.sh\"]}\n"
                           "        nopath: {argv: [hostlet-no-such-program]}\n"));
  check = run({env_path("HOSTLET_BIN"), "--check", "-c", a.config_path()});
  CHECK(check.exit_code == 1);
  CHECK(check.err.find("config.commands.nopath.argv[0]: 'hostlet-no-such-program' not found in PATH") !=
        std::string::npos);

  TempDir dir4;
  prog = script(dir4, "tool.sh", "echo hi\n");
  Agent b(dir4, agent_yaml("      commands:\n"
                           "        tool: {argv: [\"@DIR@/tool.sh\"]}\n"
                           "        sh: {argv: [sh, -c, \"echo found in PATH\"]}\n"));
  check = run({env_path("HOSTLET_BIN"), "--check", "-c", b.config_path()});
  CHECK(check.exit_code == 0);
  REQUIRE(b.start());
  CHECK(ctl_json(b, {"call", "run.tool"})["attrs"]["stdout"] == "hi\n");
  CHECK(ctl_json(b, {"call", "run.sh"})["attrs"]["stdout"] == "found in PATH\n");
  REQUIRE(::unlink(prog.c_str()) == 0);
  json r = ctl_json(b, {"call", "run.tool"});
  CHECK(r["ok"] == false);
  CHECK(r["error"] == "run.tool: cannot run " + prog + ": no such file or directory");
  stop_clean(b);
}

TEST_CASE("exec: a command runs as another user and group", "[exec][e2e]") {
  TempDir dir;
  Agent a(dir, agent_yaml("      commands:\n"
                          "        ids: {argv: [/bin/sh, -c, \"id -u; id -g; id -G\"], user: nobody}\n"
                          "        gid: {argv: [/bin/sh, -c, \"id -u; id -g\"], user: \"65534\", group: \"0\"}\n"));
  if (::geteuid() != 0) {
    REQUIRE(a.start());
    json r = ctl_json(a, {"call", "run.ids"});
    CHECK(r["ok"] == false);
    CHECK(r["error"].get<std::string>().find("operation not permitted (running as another user or group needs the "
                                             "agent to run as root)") != std::string::npos);
    stop_clean(a);
    return;
  }
  REQUIRE(a.start());
  json r = ctl_json(a, {"call", "run.ids"});
  INFO(r.dump());
  REQUIRE(r["ok"] == true);
  std::istringstream out(r["attrs"]["stdout"].get<std::string>());
  std::string uid, gid, groups;
  std::getline(out, uid);
  std::getline(out, gid);
  std::getline(out, groups);
  CHECK(uid == "65534");
  CHECK(gid != "0");
  CHECK(groups == gid);  // the agent's supplementary groups are dropped
  r = ctl_json(a, {"call", "run.gid"});
  CHECK(r["attrs"]["stdout"] == "65534\n0\n");
  stop_clean(a);
}

namespace {
// The config of the "children running" tests: `long` starts a background
// child, writes both pids to files named after the attribute n, sleeps
// `secs` and says so (n and secs reach sh as $1 and $2: an attribute never
// becomes shell code).
std::string long_runner(const std::string& agent_extra = "") {
  return agent_yaml(
      "      commands:\n"
      "        long:\n"
      "          argv: [/bin/sh, -c, \"sleep 100 & echo $! > @DIR@/bg.$1; echo $$ > @DIR@/sh.$1; sleep $2; "
      "echo finished $1\", sh, \"${n}\", \"${secs}\"]\n"
      "          timeout: 0\n"
      "        echo: {argv: [echo, \"${w}\"]}\n",
      agent_extra);
}
}  // namespace

TEST_CASE("exec: SIGTERM to the agent with children running leaves no process behind", "[exec][e2e]") {
  TempDir dir;
  Agent a(dir, long_runner());
  REQUIRE(a.start());
  LineClient c(a.control_socket());
  for (int i = 0; i < 3; i++)
    REQUIRE(c.send_line(call_line(i, "run.long", {{"n", std::to_string(i)}, {"secs", "100"}})));
  std::vector<pid_t> pids;
  for (int i = 0; i < 3; i++) {
    pids.push_back(wait_pid_file(dir / ("sh." + std::to_string(i))));
    pids.push_back(wait_pid_file(dir / ("bg." + std::to_string(i))));
  }
  for (pid_t p : pids) REQUIRE(p > 0);
  for (pid_t p : pids) CHECK(alive(p));
  stop_clean(a);
  CHECK(wait_until([&] { return std::none_of(pids.begin(), pids.end(), alive); }, 10s));
}

TEST_CASE("exec: what a command leaves in its process group is killed when it exits", "[exec][e2e]") {
  TempDir dir;
  Agent a(dir, long_runner());
  REQUIRE(a.start());
  json r = ctl_json(a, {"call", "run.long", "n=1", "secs=0"});
  CHECK(r["attrs"]["stdout"] == "finished 1\n");
  const pid_t bg = read_pid(dir / "bg.1");
  REQUIRE(bg > 0);
  CHECK(wait_until([&] { return !alive(bg); }, 10s));
  stop_clean(a);
}

TEST_CASE("exec: a process that left the group and holds the pipes does not hold up the answer", "[exec][e2e]") {
  // The command waits until its background child leads a session of its
  // own (its session id, field 6 of /proc/PID/stat, is its pid), so that the
  // exit's group kill cannot reach it.
  TempDir dir;
  Agent a(dir, agent_yaml("      commands:\n"
                          "        escape:\n"
                          "          argv: [/bin/sh, -c, \"setsid sleep 60 & echo $! > @DIR@/escaped.pid; "
                          "until [ \\\"$(cut -d' ' -f6 /proc/$!/stat)\\\" = $! ]; do sleep 0.05; done; echo out\"]\n"
                          "          kill_grace: 300ms\n"));
  REQUIRE(a.start());
  json r = ctl_json(a, {"call", "run.escape"});
  const pid_t escaped = read_pid(dir / "escaped.pid");
  INFO(r.dump());
  CHECK(r["ok"] == true);
  CHECK(r["attrs"]["stdout"] == "out\n");  // answered once the pipes' drain gave up, not after 60 s
  if (escaped > 0) {
    CHECK(alive(escaped));  // in its own session: out of the command's reach, as documented
    ::kill(escaped, SIGKILL);
  }
  REQUIRE(escaped > 0);
  stop_clean(a);
}

TEST_CASE("exec: a reload waits for running children; one outliving reload_timeout keeps the old version",
          "[exec][e2e]") {
  TempDir dir;
  Agent a(dir, long_runner(", reload_timeout: 3s"));
  REQUIRE(a.start());
  LineClient c(a.control_socket());

  // A child that ends within reload_timeout: the reload waits for it, its
  // call is answered by the old version, then the new one serves.
  REQUIRE(c.send_line(call_line(1, "run.long", {{"n", "1"}, {"secs", "1"}})));
  REQUIRE(wait_pid_file(dir / "sh.1") > 0);
  json r = ctl_json(a, {"reload", "run"});
  INFO(r.dump() << "\n" << a.log());
  CHECK(r["ok"] == true);
  auto line = c.recv_line(30s);
  REQUIRE(line);
  json answer = json::parse(*line);
  CHECK(answer["id"] == 1);
  CHECK(answer["attrs"]["stdout"] == "finished 1\n");
  CHECK(ctl_json(a, {"call", "run.echo", "w=after reload"})["attrs"]["stdout"] == "after reload\n");

  // A child that outlives reload_timeout: the reload fails, the old version
  // keeps running it and keeps serving; nothing is killed by the attempt.
  REQUIRE(c.send_line(call_line(2, "run.long", {{"n", "2"}, {"secs", "100"}})));
  const pid_t sh = wait_pid_file(dir / "sh.2"), bg = wait_pid_file(dir / "bg.2");
  REQUIRE(sh > 0);
  REQUIRE(bg > 0);
  r = ctl_json(a, {"reload", "run"});
  CHECK(r["ok"] == false);
  CHECK(r["data"]["instances"][0]["error"].get<std::string>().find(
            "1 call(s) still in progress; the old version keeps running") != std::string::npos);
  CHECK(alive(sh));
  CHECK(alive(bg));
  CHECK(ctl_json(a, {"call", "run.echo", "w=old version"})["attrs"]["stdout"] == "old version\n");

  // The agent's stop then kills it, answers its call, and leaves nothing.
  stop_clean(a);
  CHECK(wait_until([&] { return !alive(sh) && !alive(bg); }, 10s));
}

TEST_CASE("exec: the shipped example passes --check", "[exec][e2e]") {
  Run check = run({env_path("HOSTLET_BIN"), "--check", "-c", env_path("HOSTLET_SOURCE_ROOT") + "/etc/examples/exec.yaml"});
  INFO(check.out << check.err);
  CHECK(check.exit_code == 0);
  CHECK(check.out.find("ok (1 instance, 2 rules)") != std::string::npos);
}

TEST_CASE("exec: a child gets no descriptor the agent inherited from whoever started it", "[exec][e2e]") {
  // fd 200, open without close-on-exec in the test while the agent starts:
  // the agent inherits it, its children must not.
  int fd = open("/dev/null", O_RDONLY);
  REQUIRE(fd >= 0);
  int high = fcntl(fd, F_DUPFD, 200);  // F_DUPFD leaves FD_CLOEXEC clear
  close(fd);
  REQUIRE(high == 200);
  TempDir dir;
  Agent a(dir, agent_yaml("      commands:\n"
                          "        fds:\n"
                          "          argv: [/bin/sh, -c, \"if [ -e /proc/self/fd/200 ]; then echo inherited; "
                          "else echo clean; fi\"]\n"));
  const bool started = a.start();
  close(high);
  REQUIRE(started);
  CHECK(access(("/proc/" + std::to_string(a.process().pid()) + "/fd/200").c_str(), F_OK) == 0);  // the agent has it
  json r = ctl_json(a, {"call", "run.fds"});
  INFO(r.dump());
  REQUIRE(r["ok"] == true);
  CHECK(r["attrs"]["stdout"] == "clean\n");
  stop_clean(a);
}
