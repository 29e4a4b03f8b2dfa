// exec: runs commands declared in the config as actions, one process each,
// spawned on the agent's loop (uv_spawn; no shell, no thread per child).
//
// Example configuration:
//
//   plugins:
//     - name: run
//       plugin: exec
//       config:
//         max_concurrent: 8        # children of this instance at once
//         max_queued: 64           # calls waiting for a free slot; beyond: "busy"
//         commands:
//           backup:                # the action run.backup
//             argv: [/usr/local/bin/backup, --volume, "${volume}", "--label=${label}"]
//             env: {PATH: /usr/bin:/bin, VOLUME: "${volume}"}
//             cwd: /var/lib/backup
//             user: backup         # and/or group:; needs the agent to run as root
//             timeout: 10m         # then SIGTERM to its process group, SIGKILL after kill_grace
//             kill_grace: 5s
//             stdin: manifest      # the attribute `manifest` is written to its stdin
//             max_output: 64KiB    # kept per stream; the rest is read and discarded
//             max_concurrent: 1
//
//   hostlet-ctl call run.backup volume=vm1 label='nightly run' manifest="$(cat list)"
//
// Arguments: each argv item is one argument, whatever the attributes hold:
// "${volume}" with the value "a; rm -rf /" is that one string, never split,
// never read by a shell. An item may mix text and several ${attr}; `$${`
// is a literal "${", any other '$' is literal. argv[0] takes no template; it is resolved at init (PATH of the agent
// when it has no '/') and must be an executable file: `hostlet --check`
// reports it. A call naming no value for a template's attribute fails
// ("missing attribute 'volume' for argv[2]").
//
// Environment: empty but for `env` (values may hold templates). No PATH
// unless listed.
//
// Answer: ok when the command exits 0, with attrs {exit, signal, stdout,
// stderr, truncated, stdout_bytes, stderr_bytes} and the same as data (JSON;
// there stdout and stderr keep NUL bytes, which the attrs, C strings, cut).
// Otherwise an error quoting the last non-empty line of stderr:
// "run.backup: exit 3: disk full", "run.backup: killed by SIGSEGV",
// "run.backup: timed out after 10m (SIGTERM, then SIGKILL 5s later): ...".
//
// Limits: a call runs at once when both its command (`max_concurrent` of the
// command) and the instance (`max_concurrent`) have room; otherwise it
// queues, first in first out, up to `max_queued` calls for the instance,
// beyond which it fails at once with "busy". A queued call still counts
// against agent.action_timeout (30 s by default): keep command timeouts and
// queues below it.
//
// Children never outlive the instance: its stop (agent shutdown, removal)
// sends SIGKILL to every child's process group, fails queued calls, reaps
// the children and closes their handles before it reports stopped (the host
// has answered their calls "instance 'run' is stopping" by then).
// Reload: the host pauses the instance's intake and waits for its calls in
// progress for up to agent.reload_timeout before it stops the old version
// (core/reload.cpp). Running commands are therefore allowed to finish, and
// answered by the old version; if one is still running at the deadline, the
// reload fails and the old version keeps running it and keeps serving. A
// reload never kills a command. Background processes a command leaves in its
// group are killed when it exits.
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include <hostlet/plugin.hpp>
#include <nlohmann/json.hpp>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "child.hpp"
#include "template.hpp"

namespace hostlet::exec {
namespace {

const hostlet_config_key kConfig[] = {
    {.key = "commands", .type = HOSTLET_CONFIG_MAP, .default_value = nullptr,
     .description = "name -> command; each is the action <instance>.<name>", .min = 0, .max = 0,
     .flags = HOSTLET_CONFIG_REQUIRED},
    {.key = "commands.*.argv", .type = HOSTLET_CONFIG_STRING_LIST, .default_value = nullptr,
     .description = "program and arguments, one item per argument (no shell); items but the first may hold "
                    "${attr} templates",
     .min = 0, .max = 0, .flags = HOSTLET_CONFIG_REQUIRED},
    {.key = "commands.*.env", .type = HOSTLET_CONFIG_MAP, .default_value = nullptr,
     .description = "the whole environment of the command (NAME: value, values may hold templates)", .min = 0,
     .max = 0, .flags = 0},
    {.key = "commands.*.env.*", .type = HOSTLET_CONFIG_STRING, .default_value = nullptr,
     .description = "an environment variable's value", .min = 0, .max = 0, .flags = 0},
    {.key = "commands.*.cwd", .type = HOSTLET_CONFIG_STRING, .default_value = nullptr,
     .description = "absolute working directory (absent: the agent's)", .min = 0, .max = 0, .flags = 0},
    {.key = "commands.*.user", .type = HOSTLET_CONFIG_STRING, .default_value = nullptr,
     .description = "user name or uid to run as (the agent must run as root); its group unless `group`", .min = 0,
     .max = 0, .flags = 0},
    {.key = "commands.*.group", .type = HOSTLET_CONFIG_STRING, .default_value = nullptr,
     .description = "group name or gid to run as", .min = 0, .max = 0, .flags = 0},
    {.key = "commands.*.timeout", .type = HOSTLET_CONFIG_DURATION, .default_value = "20s",
     .description = "then SIGTERM to the process group (0: none)", .min = 0, .max = 24LL * 3600 * 1000, .flags = 0},
    {.key = "commands.*.kill_grace", .type = HOSTLET_CONFIG_DURATION, .default_value = "5s",
     .description = "from SIGTERM to SIGKILL after a timeout", .min = 0, .max = 3600 * 1000, .flags = 0},
    {.key = "commands.*.stdin", .type = HOSTLET_CONFIG_STRING, .default_value = nullptr,
     .description = "name of the call attribute written to stdin (absent: /dev/null)", .min = 1, .max = 256,
     .flags = 0},
    {.key = "commands.*.max_output", .type = HOSTLET_CONFIG_SIZE, .default_value = "64KiB",
     .description = "bytes of stdout and of stderr kept; the rest is read and discarded (truncated: true)",
     .min = 0, .max = 64LL << 20, .flags = 0},
    {.key = "commands.*.max_concurrent", .type = HOSTLET_CONFIG_INT, .default_value = "4",
     .description = "runs of this command at once", .min = 1, .max = 4096, .flags = 0},
    {.key = "max_concurrent", .type = HOSTLET_CONFIG_INT, .default_value = "16",
     .description = "children of this instance at once", .min = 1, .max = 4096, .flags = 0},
    {.key = "max_queued", .type = HOSTLET_CONFIG_INT, .default_value = "64",
     .description = "calls waiting for a free slot; beyond, a call fails with \"busy\"", .min = 0, .max = 100000,
     .flags = 0},
    {.key = nullptr, .type = HOSTLET_CONFIG_STRING, .default_value = nullptr, .description = nullptr, .min = 0,
     .max = 0, .flags = 0},
};

const hostlet_action_info kActions[] = {
    {"<command>", "the attributes its argv, env and stdin name",
     "runs the command; ok on exit 0 with attrs and data {exit, signal, stdout, stderr, truncated, stdout_bytes, "
     "stderr_bytes}, else an error quoting stderr's last line"},
    {nullptr, nullptr, nullptr},
};

constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

std::string errno_text(int err) { return std::strerror(err); }

// "" when `path` is an executable regular file, else why not.
std::string executable_problem(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return path + ": " + errno_text(errno);
  if (!S_ISREG(st.st_mode)) return path + ": not a regular file";
  if (::access(path.c_str(), X_OK) != 0) return path + ": not executable (" + errno_text(errno) + ")";
  return "";
}

// argv[0] as an absolute path: as written when it holds a '/', else the
// first executable of that name in the agent's PATH.
std::string resolve_program(const std::string& prog, std::string* problem) {
  if (prog.find('/') != std::string::npos) {
    if (prog[0] != '/') {
      *problem = "'" + prog + "' must be absolute or a bare name looked up in PATH";
      return "";
    }
    *problem = executable_problem(prog);
    return prog;
  }
  const char* env_path = std::getenv("PATH");
  const std::string path = env_path && *env_path ? env_path : kDefaultPath;
  size_t from = 0;
  for (;;) {
    const size_t colon = path.find(':', from);
    std::string dir = path.substr(from, colon == std::string::npos ? std::string::npos : colon - from);
    if (!dir.empty() && dir[0] == '/') {
      std::string candidate = dir + "/" + prog;
      if (executable_problem(candidate).empty()) return candidate;
    }
    if (colon == std::string::npos) break;
    from = colon + 1;
  }
  *problem = "'" + prog + "' not found in PATH (" + path + ")";
  return "";
}

bool all_digits(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos && s.size() < 10;
}

struct Identity {
  std::optional<uv_uid_t> uid;
  std::optional<uv_gid_t> gid;
};

Identity resolve_identity(const std::string& where, const std::optional<std::string>& user,
                          const std::optional<std::string>& group) {
  Identity id;
  std::vector<char> buf(16384);
  if (user) {
    if (all_digits(*user)) {
      id.uid = static_cast<uv_uid_t>(std::stoul(*user));
    } else {
      struct passwd pw {}, *found = nullptr;
      int r = ::getpwnam_r(user->c_str(), &pw, buf.data(), buf.size(), &found);
      if (r != 0 || !found)
        throw Error(-EINVAL, where + ".user: no such user '" + *user + "'" + (r ? " (" + errno_text(r) + ")" : ""));
      id.uid = found->pw_uid;
      if (!group) id.gid = found->pw_gid;
    }
  }
  if (group) {
    if (all_digits(*group)) {
      id.gid = static_cast<uv_gid_t>(std::stoul(*group));
    } else {
      struct group gr {}, *found = nullptr;
      int r = ::getgrnam_r(group->c_str(), &gr, buf.data(), buf.size(), &found);
      if (r != 0 || !found)
        throw Error(-EINVAL, where + ".group: no such group '" + *group + "'" + (r ? " (" + errno_text(r) + ")" : ""));
      id.gid = found->gr_gid;
    }
  }
  return id;
}

std::string duration_text(uint64_t ms) {
  if (ms % 60000 == 0 && ms >= 60000) return std::to_string(ms / 60000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

std::string signal_name(int sig) {
  if (const char* abbrev = ::sigabbrev_np(sig)) return std::string("SIG") + abbrev;
  return "signal " + std::to_string(sig);
}

// The last line of `text` that is not blank, without its line break, cut at 200 bytes.
std::string last_line(const std::string& text) {
  size_t end = text.size();
  while (end > 0) {
    while (end > 0 && (text[end - 1] == '\n' || text[end - 1] == '\r' || text[end - 1] == ' ' ||
                       text[end - 1] == '\t'))
      end--;
    if (end == 0) break;
    size_t start = text.rfind('\n', end - 1);
    start = start == std::string::npos ? 0 : start + 1;
    std::string line = text.substr(start, end - start);
    if (line.find_first_not_of(" \t\r") != std::string::npos) {
      if (line.size() > 200) line = line.substr(0, 200) + "...";
      return line;
    }
    end = start;
  }
  return "";
}

struct Command {
  std::string name;    // the key under commands
  std::string action;  // <instance>.<name>
  std::string file;    // argv[0], resolved
  std::vector<Template> argv;
  std::vector<std::pair<std::string, Template>> env;
  std::string cwd;
  Identity id;
  std::optional<std::string> stdin_attr;
  uint64_t timeout_ms = 0, grace_ms = 0;
  size_t max_output = 0;
  int max_concurrent = 1;
  int running = 0;
};

// A call whose templates are expanded, running or waiting for a slot.
struct Job {
  Command* cmd = nullptr;
  std::shared_ptr<Call> call;
  Spawn spawn;
};

class ExecPlugin final : public hostlet::Plugin {
 public:
  explicit ExecPlugin(Host& host) : Plugin(host), scratch_(64 * 1024) {
    max_concurrent_ = static_cast<int>(host.integer("max_concurrent"));
    max_queued_ = static_cast<size_t>(host.integer("max_queued"));
    for (const std::string& name : host.names("commands")) commands_.push_back(load(name));
    for (auto& cmd : commands_) {
      Command* c = cmd.get();
      host.action(c->name.c_str(), [this, c](Call& call) { submit(*c, call); });
    }
  }

  ~ExecPlugin() override {
    // stop() reaps every child before it reports stopped. One can remain
    // only when the host gave up waiting (shutdown_timeout / reload_timeout):
    // a process in uninterruptible sleep. Cut it loose without a callback
    // into this code, which may be unloaded next.
    for (auto& [child, owned] : children_) {
      host().error("destroyed with pid %d still running (it did not die of SIGKILL in time); abandoning it",
                   static_cast<int>(child->pid()));
      child->abandon();
      (void)owned.release();  // the loop still holds its handles' memory
    }
  }

  int start() override {
    loop_ = static_cast<uv_loop_t*>(host().uv_loop());
    if (!loop_) throw Error(-ENOSYS, "this agent does not share its libuv loop");
    return 0;
  }

  void stop(std::function<void()> stopped) override {
    stopping_ = true;
    while (!queue_.empty()) {
      Job job = std::move(queue_.front());
      queue_.pop_front();
      job.call->error(job.cmd->action + ": not started: the instance is stopping");
    }
    if (children_.empty()) return stopped();
    stopped_ = std::move(stopped);
    std::vector<Child*> running;
    for (auto& [child, owned] : children_) running.push_back(child);
    for (Child* c : running) c->kill_now();
  }

  // Labelled by instance: two exec instances write the same families.
  void collect(Metrics& m) override {
    const hostlet_attr instance{"instance", host().name()};
    m.gauge("hostlet_exec_running", "Commands running now.");
    m.sample(static_cast<double>(children_.size()), &instance, 1);
    m.gauge("hostlet_exec_queued", "Calls waiting for a free slot.");
    m.sample(static_cast<double>(queue_.size()), &instance, 1);
    m.counter("hostlet_exec_busy_total", "Calls refused because the queue was full.");
    m.sample(static_cast<double>(busy_total_), &instance, 1);
  }

 private:
  std::unique_ptr<Command> load(const std::string& name) {
    Host& h = host();
    const std::string key = "commands." + name;
    const std::string where = "config." + key;
    for (char ch : name)
      if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '_' && ch != '-')
        throw Error(-EINVAL, where + ": a command name is part of an action name and may hold only letters, digits, "
                                     "'_' and '-'");
    auto cmd = std::make_unique<Command>();
    cmd->name = name;
    cmd->action = std::string(h.name()) + "." + name;
    std::vector<std::string> argv = h.list((key + ".argv").c_str());
    if (argv.empty() || argv[0].empty()) throw Error(-EINVAL, where + ".argv: needs at least the program");
    for (size_t i = 0; i < argv.size(); i++) {
      Template t;
      if (std::string p = Template::parse(argv[i], t); !p.empty())
        throw Error(-EINVAL, where + ".argv[" + std::to_string(i) + "]: " + p);
      if (i == 0 && t.has_attrs())
        throw Error(-EINVAL, where + ".argv[0]: the program cannot come from an attribute");
      cmd->argv.push_back(std::move(t));
    }
    std::string problem;
    cmd->file = resolve_program(argv[0], &problem);
    if (!problem.empty()) throw Error(-ENOENT, where + ".argv[0]: " + problem);
    for (const std::string& var : h.names((key + ".env").c_str())) {
      if (var.find('=') != std::string::npos)
        throw Error(-EINVAL, where + ".env: the name '" + var + "' must not contain '='");
      Template t;
      if (std::string p = Template::parse(h.str((key + ".env." + var).c_str()), t); !p.empty())
        throw Error(-EINVAL, where + ".env." + var + ": " + p);
      cmd->env.emplace_back(var, std::move(t));
    }
    cmd->cwd = h.opt_str((key + ".cwd").c_str()).value_or("");
    if (!cmd->cwd.empty()) {
      struct stat st {};
      if (cmd->cwd[0] != '/') throw Error(-EINVAL, where + ".cwd: must be an absolute path");
      if (::stat(cmd->cwd.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        throw Error(-ENOENT, where + ".cwd: " + cmd->cwd + " is not a directory");
    }
    cmd->id = resolve_identity(where, h.opt_str((key + ".user").c_str()), h.opt_str((key + ".group").c_str()));
    cmd->stdin_attr = h.opt_str((key + ".stdin").c_str());
    cmd->timeout_ms = static_cast<uint64_t>(h.integer((key + ".timeout").c_str()));
    cmd->grace_ms = static_cast<uint64_t>(h.integer((key + ".kill_grace").c_str()));
    cmd->max_output = static_cast<size_t>(h.integer((key + ".max_output").c_str()));
    cmd->max_concurrent = static_cast<int>(h.integer((key + ".max_concurrent").c_str()));
    return cmd;
  }

  // Expands the call's templates (a missing attribute fails it at once),
  // then runs it, queues it, or refuses it as busy.
  void submit(Command& cmd, Call& call) {
    if (stopping_ || !loop_) return call.error(cmd.action + ": the instance is not running");
    auto lookup = [&call](const std::string& attr) { return call.attr(attr.c_str()); };
    Job job;
    job.cmd = &cmd;
    Spawn& s = job.spawn;
    s.file = cmd.file;
    std::string missing;
    for (size_t i = 0; i < cmd.argv.size(); i++) {
      std::string arg;
      if (!cmd.argv[i].expand(lookup, &arg, &missing))
        return call.error(cmd.action + ": missing attribute '" + missing + "' for argv[" + std::to_string(i) + "]");
      s.argv.push_back(std::move(arg));
    }
    for (const auto& [var, tmpl] : cmd.env) {
      std::string value;
      if (!tmpl.expand(lookup, &value, &missing))
        return call.error(cmd.action + ": missing attribute '" + missing + "' for env " + var);
      s.env.push_back(var + "=" + value);
    }
    if (cmd.stdin_attr) {
      const char* input = call.attr(cmd.stdin_attr->c_str());
      if (!input) return call.error(cmd.action + ": missing attribute '" + *cmd.stdin_attr + "' for stdin");
      s.input = input;
    }
    s.cwd = cmd.cwd;
    s.uid = cmd.id.uid;
    s.gid = cmd.id.gid;
    s.timeout_ms = cmd.timeout_ms;
    s.grace_ms = cmd.grace_ms;
    s.max_output = cmd.max_output;
    job.call = std::make_shared<Call>(std::move(call));

    if (has_room(cmd)) return launch(std::move(job));
    if (queue_.size() >= max_queued_) {
      busy_total_++;
      return job.call->error(cmd.action + ": busy: " + std::to_string(children_.size()) + " running, " +
                             std::to_string(queue_.size()) + " queued (max_concurrent " +
                             std::to_string(cmd.max_concurrent) + " for the command, " +
                             std::to_string(max_concurrent_) + " for the instance; max_queued " +
                             std::to_string(max_queued_) + ")");
    }
    queue_.push_back(std::move(job));
  }

  bool has_room(const Command& cmd) const {
    return static_cast<int>(children_.size()) < max_concurrent_ && cmd.running < cmd.max_concurrent;
  }

  void launch(Job job) {
    Command* cmd = job.cmd;
    std::shared_ptr<Call> call = job.call;
    auto child = std::make_unique<Child>(
        std::move(job.spawn), scratch_,
        [this, cmd, call](Outcome&& o) { finished(*cmd, *call, std::move(o)); },
        [this](Child* c) { reaped(c); });
    Child* c = child.get();
    children_.emplace(c, std::move(child));
    cmd->running++;
    int r = c->spawn(loop_);
    if (r != 0) {
      cmd->running--;
      std::string why = uv_strerror(r);
      if (r == UV_EPERM && (cmd->id.uid || cmd->id.gid))
        why += " (running as another user or group needs the agent to run as root)";
      call->error(cmd->action + ": cannot run " + cmd->file + (cmd->cwd.empty() ? "" : " in " + cmd->cwd) + ": " +
                  why);
      // The child's handles close; reaped() frees it and starts what waits.
    }
  }

  void finished(Command& cmd, Call& call, Outcome&& o) {
    cmd.running--;
    const std::string last = last_line(o.err);
    const std::string tail = last.empty() ? "" : ": " + last;
    if (o.stopped) {
      call.error(cmd.action + ": killed: the instance is stopping" + tail);
    } else if (o.timed_out) {
      call.error(cmd.action + ": timed out after " + duration_text(cmd.timeout_ms) + " (SIGTERM, then SIGKILL " +
                 duration_text(cmd.grace_ms) + " later; " +
                 (o.signal ? "ended by " + signal_name(o.signal) : "exit " + std::to_string(o.exit)) + ")" + tail);
    } else if (o.signal) {
      call.error(cmd.action + ": killed by " + signal_name(o.signal) + tail);
    } else if (o.exit != 0) {
      call.error(cmd.action + ": exit " + std::to_string(o.exit) + tail);
    } else {
      nlohmann::json data{{"exit", o.exit},          {"signal", o.signal},
                          {"stdout", o.out},         {"stderr", o.err},
                          {"truncated", o.truncated}, {"stdout_bytes", o.out_bytes},
                          {"stderr_bytes", o.err_bytes}};
      call.ok({{"exit", std::to_string(o.exit)},
               {"signal", std::to_string(o.signal)},
               {"stdout", o.out},
               {"stderr", o.err},
               {"truncated", o.truncated ? "true" : "false"},
               {"stdout_bytes", std::to_string(o.out_bytes)},
               {"stderr_bytes", std::to_string(o.err_bytes)}},
              data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }
  }

  void reaped(Child* c) {
    children_.erase(c);  // frees it: its last handle has closed
    if (stopping_) {
      if (children_.empty() && stopped_) std::exchange(stopped_, nullptr)();
      return;
    }
    pump();
  }

  // Starts queued calls, oldest first, while there is room.
  void pump() {
    for (auto it = queue_.begin(); it != queue_.end() && static_cast<int>(children_.size()) < max_concurrent_;) {
      if (!has_room(*it->cmd)) {
        ++it;
        continue;
      }
      Job job = std::move(*it);
      it = queue_.erase(it);
      launch(std::move(job));
    }
  }

  std::vector<char> scratch_;
  uv_loop_t* loop_ = nullptr;
  std::vector<std::unique_ptr<Command>> commands_;
  std::map<Child*, std::unique_ptr<Child>> children_;
  std::deque<Job> queue_;
  int max_concurrent_ = 16;
  size_t max_queued_ = 64;
  uint64_t busy_total_ = 0;
  bool stopping_ = false;
  std::function<void()> stopped_;
};

}  // namespace
}  // namespace hostlet::exec

HOSTLET_CPP_PLUGIN(hostlet::exec::ExecPlugin, "exec", "0.1.0",
                   "runs declared commands as actions (argv lists, no shell), with timeouts, output caps and "
                   "concurrency limits",
                   hostlet::exec::kConfig, hostlet::exec::kActions, nullptr)
