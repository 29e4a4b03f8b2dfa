#include "agent.hpp"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "agent_metrics.hpp"
#include "clock.hpp"
#include "control.hpp"
#include "metrics.hpp"
#include "reload.hpp"
#include "scrape.hpp"
#include "version.h"

namespace hostlet {

namespace {
constexpr const char* kEmbeddedName = "<embedded hostlet.yaml>";

std::string joined_names(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}
}  // namespace

Agent::Agent(AgentOptions opts) : opts_(std::move(opts)) {}

Agent::~Agent() = default;

static void dispose(std::unique_ptr<Instance> inst) { dispose_instance(std::move(inst)); }

namespace {
constexpr uint64_t kStatusMs = 10000;
}  // namespace

std::string Agent::status_line() {
  uint64_t now = uv_hrtime();
  uint64_t published = bus_->stats().published;
  double secs = status_at_ns_ && now > status_at_ns_ ? static_cast<double>(now - status_at_ns_) / 1e9 : 0;
  double rate = secs > 0 ? static_cast<double>(published - status_events_) / secs : 0;
  status_events_ = published;
  status_at_ns_ = now;
  char buf[160];
  snprintf(buf, sizeof buf, "%zu instance%s running, %zu failed, %.0f events/s", instances_.size(),
           instances_.size() == 1 ? "" : "s", failed_instances_, rate);
  return buf;
}

void Agent::notify_ready() {
  if (!notifier_.enabled()) return;
  notifier_.send("READY=1\nSTATUS=" + status_line());
  start_service_timers();
}

void Agent::start_service_timers() {
  status_timer_ = make_uv<uv_timer_t>(&loop_, this, uv_timer_init);
  uv_timer_start(
      status_timer_.get(),
      [](uv_timer_t* t) {
        auto* self = static_cast<Agent*>(t->data);
        self->notifier_.send("STATUS=" + self->status_line());
      },
      kStatusMs, kStatusMs);
  uv_unref(reinterpret_cast<uv_handle_t*>(status_timer_.get()));
  uint64_t usec = notifier_.watchdog_usec();
  if (usec == 0) return;
  // Half the interval, as sd_watchdog_enabled(3) advises. A tick that runs
  // late by more than a quarter of the interval means the loop is not keeping
  // time: no WATCHDOG=1 then, so a loop stuck for good gets restarted.
  uint64_t period_ms = std::max<uint64_t>(1, usec / 2000);
  watchdog_timer_ = make_uv<uv_timer_t>(&loop_, this, uv_timer_init);
  watchdog_due_ns_ = uv_hrtime() + period_ms * 1000000ull;
  uv_timer_start(
      watchdog_timer_.get(),
      [](uv_timer_t* t) {
        auto* self = static_cast<Agent*>(t->data);
        uint64_t usec = self->notifier_.watchdog_usec();
        uint64_t period_ns = std::max<uint64_t>(1, usec / 2000) * 1000000ull;
        uint64_t now = uv_hrtime();
        uint64_t late = now > self->watchdog_due_ns_ ? now - self->watchdog_due_ns_ : 0;
        self->watchdog_due_ns_ = now + period_ns;
        if (late > usec * 1000 / 4) {
          log(Level::Warn, "hostlet", "loop ran %llu ms late: no watchdog keep-alive this time",
              static_cast<unsigned long long>(late / 1000000));
          return;
        }
        self->notifier_.send("WATCHDOG=1");
      },
      period_ms, period_ms);
  uv_unref(reinterpret_cast<uv_handle_t*>(watchdog_timer_.get()));
}

int Agent::print_errors(const ConfigErrors& errs) const {
  for (const auto& e : errs) fprintf(stderr, "%s\n", e.str().c_str());
  return errs.empty() ? 0 : 1;
}

bool Agent::load_config(ConfigErrors& errs) {
  std::error_code ec;
  if (opts_.config_path.empty()) {
    config_dir_ = std::filesystem::current_path(ec).string();  // relative plugin paths: from here
    return parse_config(kDefaultConfig, kEmbeddedName, config_, errs);
  }
  auto abs = std::filesystem::absolute(opts_.config_path, ec);
  config_dir_ = (ec ? std::filesystem::current_path(ec) : abs.parent_path()).string();
  return load_config_file(opts_.config_path, config_, errs);
}

void Agent::setup_core() {
  uv_loop_init(&loop_);
  loop_ready_ = true;
  const AgentSection& a = config_.agent;
  bus_ = std::make_unique<EventBus>(&loop_, a.event_queue, a.event_batch);
  actions_ = std::make_unique<ActionRegistry>(&loop_, a.action_timeout_ms, a.action_wait_ms, a.event_queue);
  bus_->set_backlog([reg = actions_.get()] { return reg->waiting(); });
  lag_ = std::make_unique<LagMonitor>(&loop_, a.lag_warn_ms);
  rules_ = std::make_unique<RuleEngine>(*bus_, *actions_);
  core_.loop = &loop_;
  core_.bus = bus_.get();
  core_.actions = actions_.get();
  core_.lag = lag_.get();
  scraper_ = std::make_unique<Scraper>(core_);
  scraper_->set_core_metrics([this](MetricsWriter& w) { write_agent_metrics(*this, w); });
  core_.scraper = scraper_.get();
  core_.fds = &fds_;
  core_.health = [this](uint64_t max_lag_ms) { return agent_health(*this, max_lag_ms); };
  lag_->set_untimed_instances([this] {
    std::vector<std::string> names;
    for (const auto& [gen, inst] : core_.live)
      if (inst->uses_loop()) names.push_back("'" + inst->name() + "'");
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());  // old and new during a reload
    return joined_names(names);
  });
  core_.agent = &config_.agent;
  uv_async_init(&loop_, &core_.post_async, [](uv_async_t* h) { run_posted(*static_cast<Core*>(h->data)); });
  core_.post_async.data = &core_;
  uv_unref(reinterpret_cast<uv_handle_t*>(&core_.post_async));
}

bool Agent::create_instances(ConfigErrors& errs, bool strict) {
  bool all_ok = true;
  for (const auto& sec : config_.plugins) {
    ConfigErrors mine;
    std::string err;
    std::string path = Library::resolve(sec.plugin, config_.agent.plugin_dir, config_dir_, err);
    if (path.empty() && strict && sec.optional) {
      // An optional plugin that is not installed (hostlet without the
      // hostlet-plugin-libvirt package) is not an error of the file: the
      // agent runs without it. Anything else about it still is.
      check_warnings_.push_back({sec.file, sec.plugin_mark,
                                 "warning: optional instance '" + sec.name + "': " + err + "; the agent runs without it"});
      continue;
    }
    std::shared_ptr<Library> lib;
    if (!path.empty()) lib = Library::load(path, err);
    if (!lib) {
      mine.push_back({sec.file, sec.plugin_mark, "instance '" + sec.name + "': " + err});
    } else if (auto inst = instances_.make(sec, lib, sec.file, false, mine)) {
      log(Level::Info, sec.name, "loaded %s %s from %s", lib->desc()->name,
          lib->desc()->version ? lib->desc()->version : "", path.c_str());
      instances_.set_info(sec.name, true, "ok");
      instances_.add(std::move(inst));
    }
    if (!mine.empty()) {
      all_ok = false;
      failed_instances_++;
      if (!sec.optional) required_failed_.push_back(sec.name);
      for (auto& e : mine) {
        if (!strict)
          log(Level::Error, sec.name, "%s (%s)", e.str().c_str(),
              sec.optional ? "optional instance skipped; the others run" : "a required instance: the agent will not start");
        errs.push_back(std::move(e));
      }
    }
  }
  return all_ok;
}

void Agent::start_instances() {
  std::vector<Instance*> failed;
  for (const auto& inst : instances_.all()) {
    if (inst->start() == 0) {
      log(Level::Info, inst->name(), "started");
      continue;
    }
    const bool optional = inst->section().optional;
    log(Level::Error, inst->name(), "failed to start; %s",
        optional ? "optional instance skipped, the others run" : "a required instance: the agent stops");
    instances_.set_info(inst->name(), false, "failed: start failed");
    failed.push_back(inst.get());
    failed_instances_++;
    if (!optional) required_failed_.push_back(inst->name());
  }
  for (Instance* inst : failed) instances_.retire(instances_.take(inst), config_.agent.shutdown_timeout_ms);
}

void Agent::request_shutdown() {
  if (shutting_down_ || shutdown_deferred_) return;
  if (reloader_ && reloader_->busy()) {
    // Never stop instances under a reload in progress (it holds an instance
    // outside instances_): it ends within its deadlines, then we go on.
    shutdown_deferred_ = true;
    log(Level::Info, "hostlet", "shutdown requested: waiting for the reload in progress");
    reloader_->shutdown([this] {
      shutdown_deferred_ = false;
      request_shutdown();
    });
    return;
  }
  shutting_down_ = true;
  notifier_.send("STOPPING=1\nSTATUS=stopping");
  watchdog_timer_.reset();
  status_timer_.reset();
  if (reloader_) {
    reloader_->shutdown(nullptr);
    reloader_->close();
  }
  log(Level::Info, "hostlet", "shutting down: stopping %zu instance(s)", instances_.size());
  if (control_) control_->close();
  rules_->deactivate();
  stop_index_ = instances_.size();
  stop_next_instance();
}

void Agent::stop_next_instance() {
  if (stop_index_ == 0) {
    finish_shutdown();
    return;
  }
  Instance* inst = instances_.all()[--stop_index_].get();
  inst->stop(config_.agent.shutdown_timeout_ms, [this, inst](bool finished) {
    if (finished) {
      inst->destroy();
    } else {
      // Work of this plugin may still finish and call its done callback:
      // keep its state and code alive (we exit without freeing it).
      stuck_work_ = true;
      instances_.pin(inst->library());
    }
    stop_next_instance();
  });
}

void Agent::finish_shutdown() {
  if (stuck_work_) {
    // A pool thread is still inside plugin code: the loop cannot close while
    // its request is pending, and freeing the instance would pull memory out
    // from under it. Exit now, saying so; the kernel reclaims the rest.
    // _exit: libuv's library destructor would join the pool threads, i.e.
    // wait for the very work that outlived its deadline.
    log(Level::Error, "hostlet", "shutdown deadline passed with offloaded work still running; exiting without waiting");
    fflush(stdout);
    _exit(kExitStuckWork);
  }
  // Every instance is stopped and destroyed: free them once their lanes closed.
  for (auto& up : instances_.take_all()) dispose(std::move(up));
  close_core_handles();
}

void Agent::close_core_handles() {
  auto close_sig = [](uv_signal_t* s) {
    if (s->loop && !uv_is_closing(reinterpret_cast<uv_handle_t*>(s))) uv_close(reinterpret_cast<uv_handle_t*>(s), nullptr);
  };
  close_sig(&sigint_);
  close_sig(&sigterm_);
  close_sig(&sighup_);
  scraper_->close();
  lag_->close(nullptr);
  recent_.close();
  actions_->close(nullptr);
  bus_->close(nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&core_.post_async), nullptr);
}

int Agent::check() {
  ConfigErrors errs;
  if (!load_config(errs)) return print_errors(errs);
  set_log_level(opts_.log_level.value_or(Level::Warn));
  setup_core();
  create_instances(errs, true);
  rules_->compile(config_.rules, config_.file, errs);
  rules_->check_actions(errs);
  // Undo: instances were only inited.
  for (const auto& inst : instances_.all()) inst->stop(config_.agent.shutdown_timeout_ms, [](bool) {});
  uv_run(&loop_, UV_RUN_DEFAULT);
  for (auto& up : instances_.take_all()) {
    up->destroy();
    dispose(std::move(up));
  }
  close_core_handles();
  uv_run(&loop_, UV_RUN_DEFAULT);
  int rc = uv_loop_close(&loop_);
  if (rc != 0) fprintf(stderr, "hostlet: internal error: loop not closed cleanly (%s)\n", uv_strerror(rc));
  print_errors(check_warnings_);
  if (!errs.empty()) return print_errors(errs);
  printf("%s: ok (%zu instance%s, %zu rule%s", config_.file.c_str(), config_.plugins.size(),
         config_.plugins.size() == 1 ? "" : "s", config_.rules.size(), config_.rules.size() == 1 ? "" : "s");
  if (!config_.fragments.empty())
    printf(", with %zu conf.d fragment%s", config_.fragments.size(), config_.fragments.size() == 1 ? "" : "s");
  printf(")\n");
  return 0;
}

int Agent::run() {
  ConfigErrors errs;
  if (!load_config(errs)) return print_errors(errs);
  Level lvl = Level::Info;
  parse_log_level(config_.agent.log_level, lvl);
  set_log_level(opts_.log_level.value_or(lvl));
  start_ms_ = realtime_ms();

  // libuv reads UV_THREADPOOL_SIZE once, when the first work item is queued:
  // set it before anything can queue one.
  setenv("UV_THREADPOOL_SIZE", std::to_string(config_.agent.threadpool).c_str(), 1);
  notifier_ = ServiceNotifier::from_environment();  // also before any thread: it unsets variables
  // Sockets the service manager passed (hostlet.socket): into the fd store,
  // where the control socket and each instance's start() look for them.
  for (const auto& note : fds_.adopt_activation()) log(Level::Warn, "hostlet", "%s", note.c_str());
  if (fds_.activated_total())
    log(Level::Info, "hostlet", "socket activation: %llu socket(s) from the service manager",
        static_cast<unsigned long long>(fds_.activated_total()));
  signal(SIGPIPE, SIG_IGN);

  setup_core();
  std::string fragments;
  if (!config_.fragments.empty())
    fragments = " + " + std::to_string(config_.fragments.size()) + " fragment" +
                (config_.fragments.size() == 1 ? "" : "s") + " from " +
                std::filesystem::path(config_.fragments[0]).parent_path().string();
  log(Level::Info, "hostlet", "hostlet %s starting (config %s%s, pool %u threads)", HOSTLET_VERSION,
      config_.file.c_str(), fragments.c_str(), config_.agent.threadpool);
  // libuv creates its pool threads inside the first uv_queue_work, on the
  // calling thread: do it now rather than inside some plugin's first offload,
  // where a large pool (tens of ms for 1024 threads) would stall the loop and
  // be blamed on that plugin's callback.
  uv_queue_work(&loop_, &pool_warmup_, [](uv_work_t*) {}, [](uv_work_t*, int) {});

  ConfigErrors inst_errs;
  create_instances(inst_errs, false);
  if (!required_failed_.empty()) {
    // As systemd should see it: the start failed, exit 1 (a unit's Restart=on-failure applies).
    log(Level::Error, "hostlet", "not starting: required instance(s) failed to load: %s (`optional: true` lets an instance fail)",
        joined_names(required_failed_).c_str());
    request_shutdown();
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
    return kExitConfig;
  }

  ConfigErrors rule_errs;
  if (!rules_->compile(config_.rules, config_.file, rule_errs)) {
    // A broken rule is a config error: refuse to run half a config.
    print_errors(rule_errs);
    request_shutdown();
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
    return 1;
  }
  ConfigErrors unknown;
  rules_->check_actions(unknown);
  for (const auto& e : unknown)
    log(Level::Warn, "hostlet", "%s (its instance failed to load; the rule will fail when it fires)", e.str().c_str());
  rules_->activate();

  // The control socket opens last: once it answers, every instance has started.
  control_ = std::make_unique<ControlServer>(*this);
  std::string cerr;
  // An activated control socket (FileDescriptorName=control) is already
  // bound, by the service manager: nothing to check or replace.
  const int control_fd = fds_.take_activated("control");
  if (control_fd < 0 && !control_->can_listen(config_.agent.control_socket, cerr)) {
    log(Level::Error, "hostlet", "control socket: %s", cerr.c_str());
    control_.reset();
    exit_code_ = kExitConfig;
    request_shutdown();
  } else {
    uv_signal_init(&loop_, &sigint_);
    uv_signal_init(&loop_, &sigterm_);
    sigint_.data = sigterm_.data = this;
    auto on_signal = [](uv_signal_t* s, int signum) {
      auto* self = static_cast<Agent*>(s->data);
      if (self->shutting_down_) {
        log(Level::Warn, "hostlet", "signal %d during shutdown: exiting now (status %d)", signum, kExitSignalled);
        _exit(kExitSignalled);
      }
      log(Level::Info, "hostlet", "received %s", signum == SIGINT ? "SIGINT" : "SIGTERM");
      self->request_shutdown();
    };
    uv_signal_start(&sigint_, on_signal, SIGINT);
    uv_signal_start(&sigterm_, on_signal, SIGTERM);
    reloader_ = std::make_unique<Reloader>(
        ReloadTarget{core_, instances_, *rules_, config_, opts_.config_path, config_dir_, opts_.log_level.has_value(),
                     [this](bool starting) {
                       if (starting) notifier_.reloading();
                       else notifier_.send("READY=1\nSTATUS=" + status_line());
                     }});
    // SIGHUP: re-read the config file and apply the difference.
    uv_signal_init(&loop_, &sighup_);
    sighup_.data = this;
    uv_signal_start(
        &sighup_,
        [](uv_signal_t* s, int) {
          auto* self = static_cast<Agent*>(s->data);
          if (self->shutting_down_ || self->shutdown_deferred_) return;
          log(Level::Info, "hostlet", "received SIGHUP: reloading %s", self->config_.file.c_str());
          self->reloader_->request("", "SIGHUP", [](const ReloadOutcome& out) {
            log(out.ok ? Level::Info : Level::Error, "hostlet", "reload (SIGHUP): %s", out.summary.c_str());
          });
        },
        SIGHUP);
    lag_->start();
    recent_.start(&loop_, [this](const auto& add) {
      add("loop", lag_->lateness());
      for (const auto& i : instances_.all()) {
        add(recent_key("wait", *i), i->lane().stats().queue_wait);
        add(recent_key("run", *i), i->lane().stats().run_time);
      }
    });
    start_instances();
    for (const auto& name : fds_.release_unclaimed_activation())
      log(Level::Warn, "hostlet", "socket activation: no instance took the socket named '%s' (closed)", name.c_str());
    reloader_->update_watches();
    if (!required_failed_.empty()) {
      log(Level::Error, "hostlet", "stopping: required instance(s) failed to start: %s (`optional: true` lets an instance fail)",
          joined_names(required_failed_).c_str());
      if (control_fd >= 0) ::close(control_fd);
      control_.reset();
      exit_code_ = kExitConfig;
      request_shutdown();
    } else if (control_fd >= 0 ? !control_->listen_fd(control_fd, cerr)
                               : !control_->listen(config_.agent.control_socket, config_.agent.control_mode,
                                                   config_.agent.control_group, cerr)) {
      log(Level::Error, "hostlet", "control socket: %s", cerr.c_str());
      control_.reset();
      exit_code_ = kExitConfig;
      request_shutdown();
    }
    if (control_) {
      log(Level::Info, "hostlet", "ready: %zu instance(s), %zu rule(s), control socket %s", instances_.size(),
          rules_->size(), config_.agent.control_socket.c_str());
      notify_ready();
    }
  }

  uv_run(&loop_, UV_RUN_DEFAULT);
  if (stuck_work_) return exit_code_;
  int rc = uv_loop_close(&loop_);
  if (rc != 0) {
    log(Level::Error, "hostlet", "loop did not close cleanly: %s", uv_strerror(rc));
    uv_walk(
        &loop_,
        [](uv_handle_t* h, void*) { log(Level::Error, "hostlet", "  open handle: %s", uv_handle_type_name(h->type)); },
        nullptr);
    return 1;
  }
  log(Level::Info, "hostlet", "stopped");
  return exit_code_;
}

}  // namespace hostlet
