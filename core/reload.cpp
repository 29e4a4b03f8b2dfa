#include "reload.hpp"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "default_config.hpp"
#include "fd_store.hpp"
#include "lag.hpp"
#include "log.hpp"

namespace hostlet {

namespace {

uint64_t ms_since(uint64_t t0_ns) { return (uv_hrtime() - t0_ns) / 1000000; }

std::string version_of(const Library& lib) {
  const hostlet_plugin* d = lib.desc();
  return d && d->version ? d->version : "";
}

std::string joined(const ConfigErrors& errs) {
  std::string s;
  for (const auto& e : errs) s += (s.empty() ? "" : "; ") + e.str();
  return s;
}

// What decides whether an instance changed, apart from its .so file.
std::string section_key(const InstanceSection& s) {
  std::string k = s.plugin + '\n' + std::to_string(s.max_inflight) + '\n' + std::to_string(s.max_queue) + '\n' +
                  std::to_string(s.offload_timeout_ms) + '\n' + (s.watch ? "watch" : "") + '\n';
  if (s.config.IsDefined() && !s.config.IsNull()) k += YAML::Dump(s.config);
  return k;
}

constexpr uint64_t kQuiescePollMs = 1;
constexpr uint64_t kWatchSettleMs = 300;  // a linker writes the file in several steps

}  // namespace

struct Reloader::Op {
  enum Kind { Add, Reload, Remove } kind = Add;
  InstanceSection section;       // Add, Reload: the section from the file
  std::shared_ptr<Library> lib;  // Add, Reload: loaded while preparing
  std::string error;             // preparing failed
  ReloadItem item;
  uint64_t t0 = 0;
  Instance* old = nullptr;            // Reload: the running instance
  std::unique_ptr<Instance> next;     // Reload: the new one until the swap
};

struct Reloader::Job {
  uv_work_t req{};
  Reloader* self = nullptr;
  // inputs (snapshots taken on the loop)
  std::string name;         // empty: the whole config
  std::string config_path;  // empty: the embedded default config
  std::string config_label, config_dir;
  struct Running {
    std::string name, key, lib_path;
    Library::FileId file;
  };
  std::vector<Running> running;
  // outputs
  Config config;
  ConfigErrors errors;
  std::string error;
  std::vector<Op> ops;
  // progress (loop)
  size_t next = 0;
  bool rules_active = false;
  ReloadOutcome out;
};

// A `watch: true` instance's .so file: an fs event on its directory, and a
// settle timer. Destroying it closes both handles.
struct Reloader::Watch {
  Reloader* self;
  std::string name, path, dir, file;
  UvPtr<uv_fs_event_t> ev;
  UvPtr<uv_timer_t> settle;
};

Reloader::Reloader(ReloadTarget target)
    : t_(std::move(target)), kick_(make_uv<uv_timer_t>(t_.core.loop, this, uv_timer_init)) {}

Reloader::~Reloader() = default;

// ----------------------------------------------------------------- requests

void Reloader::request(const std::string& name, const std::string& origin, ReloadReply reply) {
  if (stopping_) {
    ReloadOutcome out;
    out.summary = "the agent is shutting down";
    if (reply) reply(out);
    return;
  }
  for (auto& q : queue_)
    if (q.name == name) {  // the same reload is already waiting: it answers this requester too
      if (reply) q.replies.push_back(std::move(reply));
      log(Level::Debug, "hostlet", "reload%s%s (%s) coalesced with a queued one", name.empty() ? "" : " ",
          name.c_str(), origin.c_str());
      return;
    }
  Request r{name, origin, {}};
  if (reply) r.replies.push_back(std::move(reply));
  queue_.push_back(std::move(r));
  pump();
}

void Reloader::pump() {
  if (current_ || queue_.empty() || stopping_) return;
  current_ = std::make_unique<Request>(std::move(queue_.front()));
  queue_.pop_front();
  log(Level::Info, "hostlet", "reload%s%s requested (%s)", current_->name.empty() ? " of the config" : " ",
      current_->name.c_str(), current_->origin.c_str());
  if (t_.on_reload) t_.on_reload(true);

  auto job = std::make_unique<Job>();
  job->self = this;
  job->name = current_->name;
  job->config_path = t_.config_path;
  job->config_label = t_.config.file;
  job->config_dir = t_.config_dir;
  for (const auto& inst : t_.instances.all())
    job->running.push_back({inst->name(), section_key(inst->section()), inst->library()->path(),
                            inst->library()->file_id()});
  job->req.data = job.get();
  job_ = std::move(job);
  // Reading the file, copying the .so and dlopen() block: a pool thread does them.
  int r = uv_queue_work(t_.core.loop, &job_->req, &Reloader::prepare, [](uv_work_t* w, int) {
    auto* j = static_cast<Job*>(w->data);
    j->self->prepared(j);
  });
  if (r != 0) {
    ReloadOutcome out;
    out.summary = std::string("cannot queue the reload: ") + uv_strerror(r);
    finish(std::move(out));
  }
}

// Pool thread: nothing here touches the agent.
void Reloader::prepare(uv_work_t* w) {
  auto* j = static_cast<Job*>(w->data);
  bool ok = j->config_path.empty() ? parse_config(kDefaultConfig, j->config_label, j->config, j->errors)
                                   : load_config_file(j->config_path, j->config, j->errors);
  if (!ok) return;
  auto running = [&](const std::string& name) -> const Job::Running* {
    for (const auto& r : j->running)
      if (r.name == name) return &r;
    return nullptr;
  };
  auto resolve = [&](const InstanceSection& sec, std::string& err) {
    return Library::resolve(sec.plugin, j->config.agent.plugin_dir, j->config_dir, err);
  };
  auto load = [&](Op& op) {
    std::string err;
    std::string path = resolve(op.section, err);
    if (!path.empty()) op.lib = Library::load(path, err);
    if (!op.lib) op.error = err;
  };
  if (!j->name.empty()) {
    for (const auto& sec : j->config.plugins)
      if (sec.name == j->name) {
        Op op;
        op.kind = running(sec.name) ? Op::Reload : Op::Add;
        op.section = sec;
        load(op);
        j->ops.push_back(std::move(op));
        return;
      }
    j->error = running(j->name) ? "instance '" + j->name + "' is not in " + j->config.file +
                                      " any more (`hostlet-ctl reload` without a name applies removals)"
                                : "no instance named '" + j->name + "' in " + j->config.file;
    return;
  }
  for (const auto& sec : j->config.plugins) {
    const Job::Running* r = running(sec.name);
    bool changed = !r || section_key(sec) != r->key;
    if (!changed) {
      std::string err;
      std::string path = resolve(sec, err);
      Library::FileId now;
      changed = path != r->lib_path || !Library::stat_file(path, now) || !(now == r->file);
    }
    if (!changed) continue;
    Op op;
    op.kind = r ? Op::Reload : Op::Add;
    op.section = sec;
    load(op);
    j->ops.push_back(std::move(op));
  }
  for (const auto& r : j->running) {
    bool kept = std::any_of(j->config.plugins.begin(), j->config.plugins.end(),
                            [&](const InstanceSection& s) { return s.name == r.name; });
    if (kept) continue;
    Op op;
    op.kind = Op::Remove;
    op.section.name = r.name;
    j->ops.push_back(std::move(op));
  }
}

void Reloader::fail_request(const std::string& error) {
  ReloadOutcome out;
  const std::string& name = job_->name;
  if (Instance* inst = name.empty() ? nullptr : t_.instances.find(name)) {
    ReloadItem item;
    item.name = name;
    item.action = "failed";
    item.version = item.previous = version_of(*inst->library());
    item.error = error + "; the old version keeps running";
    t_.instances.set_info(name, false, "failed: " + item.error);
    log(Level::Error, name, "reload failed: %s", item.error.c_str());
    out.summary = name + ": " + item.error;
    out.items.push_back(std::move(item));
  } else {
    out.summary = error + "; nothing changed";
  }
  finish(std::move(out));
}

void Reloader::prepared(Job* job) {
  if (!job->errors.empty()) return fail_request(joined(job->errors));
  if (!job->error.empty()) return fail_request(job->error);
  if (job->name.empty()) {
    ConfigErrors errs;
    if (!t_.rules.compile(job->config.rules, job->config.file, errs)) return fail_request(joined(errs));
    apply_agent_section(job->config.agent);
  }
  // Adds and reloads first, then the rules, then removals: the old rules
  // never lose an action they call, the new ones find theirs.
  std::stable_partition(job->ops.begin(), job->ops.end(), [](const Op& op) { return op.kind != Op::Remove; });
  next_op();
}

void Reloader::next_op() {
  Job& j = *job_;
  bool whole = j.name.empty();
  if (whole && !j.rules_active && (j.next == j.ops.size() || j.ops[j.next].kind == Op::Remove)) {
    ConfigErrors missing;
    t_.rules.check_actions(missing);
    for (const auto& e : missing)
      log(Level::Warn, "hostlet", "%s (the rule will fail when it fires)", e.str().c_str());
    t_.rules.activate();
    j.rules_active = true;
    j.out.rules = t_.rules.size();
    t_.config.rules = j.config.rules;
  }
  if (j.next == j.ops.size()) {
    ReloadOutcome out = std::move(j.out);
    out.ok = std::all_of(out.items.begin(), out.items.end(), [](const ReloadItem& i) { return i.ok; });
    std::string s;
    for (const auto& i : out.items) {
      if (!s.empty()) s += "; ";
      if (!i.ok) s += "failed " + i.name + ": " + i.error;
      else if (i.action == "reloaded") s += "reloaded " + i.name + " (" + i.previous + " -> " + i.version + ")";
      else s += i.action + " " + i.name;
    }
    if (whole) {
      if (out.items.empty()) s = "no instance changed";
      s += "; " + std::to_string(out.rules.value_or(0)) + " rule(s) active";
    } else if (out.items.size() == 1 && out.items[0].ok) {
      const ReloadItem& i = out.items[0];
      s = i.name + ": " + (i.action == "reloaded" ? "reloaded " + i.previous + " -> " + i.version : i.action + " " + i.version) +
          " in " + std::to_string(i.ms) + " ms (held " + std::to_string(i.held_calls) + " call(s), " +
          std::to_string(i.held_events) + " event(s))";
    } else if (out.items.size() == 1) {
      s = out.items[0].name + ": " + out.items[0].error;
    }
    out.summary = s;
    update_watches();
    return finish(std::move(out));
  }
  Op& op = j.ops[j.next++];
  op.t0 = uv_hrtime();
  op.item.name = op.section.name;
  current_instance_ = op.section.name;
  switch (op.kind) {
    case Op::Add: return op_add(op);
    case Op::Reload: return op_reload(op);
    case Op::Remove: return op_remove(op);
  }
}

void Reloader::op_done(Op& op, bool ok, const std::string& error) {
  op.item.ok = ok;
  op.item.error = error;
  if (!ok) op.item.action = "failed";
  op.item.ms = ms_since(op.t0);
  const std::string& name = op.item.name;
  if (op.kind != Op::Remove) t_.instances.set_info(name, ok, ok ? "ok" : "failed: " + error);
  if (ok) {
    std::string what = op.item.action == "removed" ? "removed (was version " + op.item.previous + ")"
                       : op.item.action == "added" ? "added version " + op.item.version
                                                   : "reloaded " + op.item.previous + " -> " + op.item.version;
    if (op.lib && op.item.action != "removed") what += " from " + op.lib->path();
    log(Level::Info, name, "%s in %llu ms (held %zu call(s), %zu event(s))%s%s", what.c_str(),
        static_cast<unsigned long long>(op.item.ms), op.item.held_calls, op.item.held_events,
        error.empty() ? "" : "; ", error.c_str());
    // The running config now has this instance's section as loaded.
    auto& secs = t_.config.plugins;
    auto it = std::find_if(secs.begin(), secs.end(), [&](const InstanceSection& s) { return s.name == name; });
    if (op.kind == Op::Remove) {
      if (it != secs.end()) secs.erase(it);
    } else if (it != secs.end()) {
      *it = op.section;
    } else {
      secs.push_back(op.section);
    }
  } else {
    log(Level::Error, name, "reload failed: %s", error.c_str());
  }
  if (t_.core.fds) {
    if (size_t n = t_.core.fds->settle(name))
      log(Level::Warn, name, "fd store: closed %zu fd(s) the previous version left and no successor took", n);
  }
  job_->out.items.push_back(op.item);
  current_instance_.clear();
  next_op();
}

// ------------------------------------------------------------------ add/remove

void Reloader::op_add(Op& op) {
  op.item.action = "added";
  if (!op.error.empty()) return op_done(op, false, op.error);
  ConfigErrors errs;
  auto inst = t_.instances.make(op.section, op.lib, op.section.file, false, errs);
  if (!inst) return op_done(op, false, joined(errs));
  op.item.version = version_of(*op.lib);
  if (int r = inst->start(); r != 0) {
    t_.instances.retire(std::move(inst), t_.config.agent.reload_timeout_ms);
    return op_done(op, false, std::string("start failed: ") + hostlet_strerror(r));
  }
  t_.instances.add(std::move(inst));
  op_done(op, true, "");
}

void Reloader::op_remove(Op& op) {
  op.item.action = "removed";
  std::unique_ptr<Instance> inst = t_.instances.take(t_.instances.find(op.section.name));
  if (!inst) return op_done(op, true, "");
  op.item.previous = version_of(*inst->library());
  t_.instances.drop_info(op.section.name);
  size_t index = job_->next - 1;
  t_.instances.retire(std::move(inst), t_.config.agent.reload_timeout_ms, [this, index](bool finished) {
    Op& o = job_->ops[index];
    if (!finished) o.item.error = "its work outlived reload_timeout; its code stays loaded";
    op_done(o, true, o.item.error);
  });
}

// ---------------------------------------------------------------- reload

void Reloader::op_reload(Op& op) {
  Instance* old = t_.instances.find(op.section.name);
  if (!old) {
    op.kind = Op::Add;
    return op_add(op);
  }
  op.item.action = "reloaded";
  op.item.previous = version_of(*old->library());
  const std::string keeps = "; the old version keeps running";
  op.item.version = op.item.previous;  // what serves; the new one's once swapped in
  if (!op.error.empty()) return op_done(op, false, op.error + keeps);
  op.item.attempted = version_of(*op.lib);
  ConfigErrors errs;
  op.next = t_.instances.make(op.section, op.lib, op.section.file, true, errs);
  if (!op.next) return op_done(op, false, joined(errs) + keeps);
  op.old = old;
  // Pause: from here calls to the instance wait and its events are kept.
  t_.core.actions->hold(op.section.name, t_.config.agent.event_queue);
  t_.core.bus->hold(old);
  uint64_t timeout = t_.config.agent.reload_timeout_ms;
  quiesce_deadline_ns_ = uv_hrtime() + timeout * 1000000ull;
  quiesce_timer_ = make_uv<uv_timer_t>(t_.core.loop, this, uv_timer_init);
  uv_timer_start(
      quiesce_timer_.get(), [](uv_timer_t* t) { static_cast<Reloader*>(t->data)->quiesce_tick(); }, 0, kQuiescePollMs);
}

Reloader::Op& Reloader::current_op() { return job_->ops[job_->next - 1]; }

void Reloader::quiesce_tick() {
  Op& op = current_op();
  size_t work = op.old->lane().outstanding();
  size_t calls = t_.core.actions->pending_for(op.old);
  bool drained = work == 0 && calls == 0;
  if (!drained && uv_hrtime() < quiesce_deadline_ns_) return;
  quiesce_timer_.reset();
  if (drained) {
    // From here the old instance may leave fds for its successor (keep_fd).
    if (t_.core.fds) t_.core.fds->expect(op.section.name);
    op.old->stop(t_.config.agent.reload_timeout_ms, [this](bool finished) { after_old_stopped(finished); });
    return;
  }
  // Abort: the old instance never stopped; it gets what was held for it.
  std::string name = op.section.name;
  t_.core.actions->discard(op.next.get());
  t_.core.bus->release(op.next.get(), nullptr);
  t_.instances.retire(std::move(op.next), t_.config.agent.reload_timeout_ms);
  op.item.held_events = t_.core.bus->release(op.old, op.old);
  op.item.held_calls = t_.core.actions->release(name);
  op_done(op, false,
          "the old version's work did not finish within reload_timeout (" +
              std::to_string(t_.config.agent.reload_timeout_ms) + " ms): " + std::to_string(work) +
              " offload(s) and " + std::to_string(calls) + " call(s) still in progress; the old version keeps running");
}

void Reloader::after_old_stopped(bool finished) {
  Op& op = current_op();
  const std::string name = op.section.name;
  // Swap.
  for (const auto& n : t_.core.actions->commit(op.next.get()))
    log(Level::Error, name, "action '%s' of the new version is already registered by another instance; not installed",
        n.c_str());
  Instance* next = op.next.get();
  std::unique_ptr<Instance> old = t_.instances.replace(op.old, std::move(op.next));
  op.item.version = op.item.attempted;
  std::string error;
  if (int r = next->start(); r == 0) {
    op.item.held_events = t_.core.bus->release(old.get(), next);
    op.item.held_calls = t_.core.actions->release(name);
  } else {
    // After the swap there is nothing to roll back to but the old code,
    // still loaded: start a fresh instance of it.
    error = std::string("the new version failed to start: ") + hostlet_strerror(r);
    size_t place = 0;
    std::unique_ptr<Instance> failed = t_.instances.take(next, &place);
    t_.core.bus->release(failed.get(), nullptr);
    t_.instances.retire(std::move(failed), t_.config.agent.reload_timeout_ms);
    ConfigErrors errs;
    auto again = t_.instances.make(old->section(), old->library(), old->config_file(), false, errs);
    int r2 = again ? again->start() : 0;
    if (again && r2 == 0) {
      error += "; the old version was started again";
      op.item.held_events = t_.core.bus->release(old.get(), again.get());
      t_.instances.insert(place, std::move(again));  // in the old one's place
    } else {
      error += "; the old version could not be started again (" +
               (errs.empty() ? std::string("start failed: ") + hostlet_strerror(r2) : joined(errs)) +
               "): the instance is down";
      if (again) t_.instances.retire(std::move(again), t_.config.agent.reload_timeout_ms);
      t_.core.bus->release(old.get(), nullptr);
    }
    op.item.held_calls = t_.core.actions->release(name);  // to the restarted old version, or failed
    op.item.version = op.item.previous;
  }
  if (!finished) {
    // Its work outlived the deadline: its code stays mapped, its record alive.
    t_.instances.pin(old->library());
    (void)old.release();
    op.item.error = "the old version's work outlived reload_timeout; its code stays loaded";
    return op_done(op, error.empty(), error.empty() ? op.item.error : error);
  }
  old->destroy();
  uint64_t before = Library::unmapped_failures();
  dispose_instance(std::move(old), [this, before, error] {
    Op& o = current_op();
    std::string note;
    if (Library::unmapped_failures() > before) note = "the old image is still mapped after dlclose (see the log)";
    if (!error.empty()) return op_done(o, false, note.empty() ? error : error + "; " + note);
    op_done(o, true, note);
  });
}

// ------------------------------------------------------------------ agent keys

void Reloader::apply_agent_section(const AgentSection& fresh) {
  AgentSection& cur = t_.config.agent;
  std::vector<std::string> fixed;
  if (fresh.control_socket != cur.control_socket) fixed.push_back("control_socket");
  if (fresh.control_mode != cur.control_mode) fixed.push_back("control_mode");
  if (fresh.control_group != cur.control_group) fixed.push_back("control_group");
  if (fresh.control_max_connections != cur.control_max_connections) fixed.push_back("control_max_connections");
  if (fresh.control_max_line != cur.control_max_line) fixed.push_back("control_max_line");
  if (fresh.threadpool != cur.threadpool) fixed.push_back("threadpool");
  for (const auto& k : fixed)
    log(Level::Warn, "hostlet", "agent.%s cannot change while the agent runs; keeping the running value (restart to apply)",
        k.c_str());
  if (fresh.log_level != cur.log_level) {
    Level l;
    if (!t_.log_level_fixed && parse_log_level(fresh.log_level, l)) set_log_level(l);
    cur.log_level = fresh.log_level;
  }
  cur.plugin_dir = fresh.plugin_dir;
  cur.control_max_write_buffer = fresh.control_max_write_buffer;
  cur.control_idle_timeout_ms = fresh.control_idle_timeout_ms;
  cur.event_queue = fresh.event_queue;
  cur.event_batch = fresh.event_batch;
  t_.core.bus->set_limits(cur.event_queue, cur.event_batch);
  cur.lag_warn_ms = fresh.lag_warn_ms;
  t_.core.lag->set_warn_ms(cur.lag_warn_ms);
  cur.shutdown_timeout_ms = fresh.shutdown_timeout_ms;
  cur.reload_timeout_ms = fresh.reload_timeout_ms;
  cur.action_timeout_ms = fresh.action_timeout_ms;
  t_.core.actions->set_timeout(cur.action_timeout_ms);
  cur.action_wait_ms = fresh.action_wait_ms;
  cur.control_admin_uids = fresh.control_admin_uids;  // applied to the next request of every connection
  cur.control_admin_gids = fresh.control_admin_gids;
  cur.control_read_uids = fresh.control_read_uids;
  cur.control_read_gids = fresh.control_read_gids;
  t_.core.actions->set_wait(cur.action_wait_ms, cur.event_queue);
}

// --------------------------------------------------------------- finishing

void Reloader::finish(ReloadOutcome out) {
  done_++;
  if (out.ok) succeeded_++;
  std::unique_ptr<Request> req = std::move(current_);
  current_instance_.clear();
  if (t_.on_reload) t_.on_reload(false);
  for (auto& reply : req->replies)
    if (reply) reply(out);
  // The job (and the frames above us that still refer to it) is freed on
  // the next loop turn, which also starts the next queued request.
  if (stopping_) {
    if (after_current_) {
      auto then = std::move(after_current_);
      after_current_ = nullptr;
      then();
    }
    return;
  }
  if (kick_)
    uv_timer_start(
        kick_.get(),
        [](uv_timer_t* t) {
          auto* self = static_cast<Reloader*>(t->data);
          self->job_.reset();
          self->pump();
        },
        0, 0);
}

void Reloader::shutdown(std::function<void()> then) {
  stopping_ = true;
  std::deque<Request> q;
  q.swap(queue_);
  ReloadOutcome out;
  out.summary = "the agent is shutting down";
  for (auto& r : q)
    for (auto& reply : r.replies)
      if (reply) reply(out);
  if (!then) return;
  if (busy()) after_current_ = std::move(then);
  else then();
}

// ------------------------------------------------------------------ watches

void Reloader::update_watches() {
  if (stopping_) return;
  std::map<std::string, std::string> want;  // instance -> .so path
  for (const auto& inst : t_.instances.all())
    if (inst->section().watch) want[inst->name()] = inst->library()->path();
  for (auto it = watches_.begin(); it != watches_.end();) {
    auto w = want.find(it->first);
    if (w != want.end() && w->second == it->second->path) {
      want.erase(w);
      ++it;
      continue;
    }
    it = watches_.erase(it);
  }
  for (const auto& [name, path] : want) {
    auto w = std::make_unique<Watch>();
    std::filesystem::path p(path);
    w->self = this;
    w->name = name;
    w->path = path;
    w->dir = p.parent_path().string();
    w->file = p.filename().string();
    w->ev = make_uv<uv_fs_event_t>(t_.core.loop, w.get(), uv_fs_event_init);
    w->settle = make_uv<uv_timer_t>(t_.core.loop, w.get(), uv_timer_init);
    int r = uv_fs_event_start(
        w->ev.get(),
        [](uv_fs_event_t* h, const char* file, int, int status) {
          auto* w = static_cast<Watch*>(h->data);
          if (status < 0) {
            log(Level::Warn, w->name, "watching %s: %s", w->dir.c_str(), uv_strerror(status));
            return;
          }
          if (!file || w->file != file) return;
          uv_timer_start(
              w->settle.get(), [](uv_timer_t* t) { static_cast<Watch*>(t->data)->self->watch_fired(static_cast<Watch*>(t->data)->name); },
              kWatchSettleMs, 0);
        },
        w->dir.c_str(), 0);
    if (r != 0) {
      log(Level::Warn, name, "watch: cannot watch %s: %s; `watch: true` has no effect", w->dir.c_str(), uv_strerror(r));
      continue;  // w goes, closing its handles
    }
    log(Level::Debug, name, "watching %s for a new build", path.c_str());
    watches_[name] = std::move(w);
  }
}

void Reloader::watch_fired(const std::string& name) {
  Instance* inst = t_.instances.find(name);
  if (!inst) return;
  Library::FileId now;
  if (!Library::stat_file(inst->library()->path(), now)) return;  // mid-replacement: the next event comes
  if (now == inst->library()->file_id()) return;
  log(Level::Info, name, "%s changed: reloading", inst->library()->path().c_str());
  request(name, "watch", [](const ReloadOutcome& out) {
    log(out.ok ? Level::Info : Level::Error, "hostlet", "reload (watch): %s", out.summary.c_str());
  });
}

void Reloader::close() {
  watches_.clear();
  stopping_ = true;
  kick_.reset();
}

}  // namespace hostlet
