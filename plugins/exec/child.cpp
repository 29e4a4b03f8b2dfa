#include "child.hpp"

#include <signal.h>

#include <algorithm>
#include <cerrno>

namespace hostlet::exec {

Child::Child(Spawn spec, std::vector<char>& scratch, std::function<void(Outcome&&)> done,
             std::function<void(Child*)> reaped)
    : spec_(std::move(spec)), scratch_(scratch), done_(std::move(done)), reaped_(std::move(reaped)) {
  out_.child = this;
  err_.child = this;
}

// The owner frees a Child only from `reaped`, when no handle is left.
Child::~Child() = default;

void Child::init_handle(uv_handle_t* h) {
  h->data = this;
  handles_++;
}

void Child::close_handle(uv_handle_t* h) {
  if (!uv_is_closing(h)) uv_close(h, &Child::on_close);
}

void Child::on_close(uv_handle_t* h) {
  auto* self = static_cast<Child*>(h->data);
  if (--self->handles_ == 0 && self->closing_) self->reaped_(self);  // may free self
}

int Child::spawn(uv_loop_t* loop) {
  uv_timer_init(loop, &timer_);
  init_handle(reinterpret_cast<uv_handle_t*>(&timer_));
  for (Stream* s : {&out_, &err_}) {
    uv_pipe_init(loop, &s->pipe, 0);
    init_handle(reinterpret_cast<uv_handle_t*>(&s->pipe));
    s->pipe.data = s;  // on_close reads a Child: fixed up in close_stream
    s->open = true;
  }
  if (spec_.input) {
    uv_pipe_init(loop, &in_, 0);
    init_handle(reinterpret_cast<uv_handle_t*>(&in_));
    in_open_ = true;
  }

  std::vector<char*> argv, env;
  for (auto& a : spec_.argv) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : spec_.env) env.push_back(e.data());
  env.push_back(nullptr);

  uv_stdio_container_t stdio[3];
  if (spec_.input) {
    stdio[0].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_READABLE_PIPE);
    stdio[0].data.stream = reinterpret_cast<uv_stream_t*>(&in_);
  } else {
    stdio[0].flags = UV_IGNORE;  // /dev/null
  }
  stdio[1].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
  stdio[1].data.stream = reinterpret_cast<uv_stream_t*>(&out_.pipe);
  stdio[2].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
  stdio[2].data.stream = reinterpret_cast<uv_stream_t*>(&err_.pipe);

  uv_process_options_t opts{};
  opts.exit_cb = &Child::on_exit;
  opts.file = spec_.file.c_str();
  opts.args = argv.data();
  opts.env = env.data();
  opts.cwd = spec_.cwd.empty() ? nullptr : spec_.cwd.c_str();
  opts.stdio_count = 3;
  opts.stdio = stdio;
  unsigned flags = UV_PROCESS_DETACHED;  // setsid(): the child leads its own process group
  if (spec_.uid) {
    flags |= UV_PROCESS_SETUID;
    opts.uid = *spec_.uid;
  }
  if (spec_.gid) {
    flags |= UV_PROCESS_SETGID;
    opts.gid = *spec_.gid;
  }
  opts.flags = flags;

  int r = uv_spawn(loop, &proc_, &opts);
  // libuv initialises the process handle even when the spawn fails: close it either way.
  init_handle(reinterpret_cast<uv_handle_t*>(&proc_));
  if (r != 0) {
    finished_ = true;  // done_ is not called: the caller answers with r
    close_all();
    return r;
  }
  spawned_ = true;
  pid_ = proc_.pid;

  for (Stream* s : {&out_, &err_})
    uv_read_start(reinterpret_cast<uv_stream_t*>(&s->pipe), &Child::on_alloc, &Child::on_read);
  if (spec_.input) {
    uv_buf_t buf = uv_buf_init(spec_.input->data(), static_cast<unsigned>(spec_.input->size()));
    write_req_.data = this;
    if (spec_.input->empty() ||
        uv_write(&write_req_, reinterpret_cast<uv_stream_t*>(&in_), &buf, 1, &Child::on_write) != 0) {
      in_open_ = false;
      close_handle(reinterpret_cast<uv_handle_t*>(&in_));  // EOF at once
    }
  }
  if (spec_.timeout_ms) uv_timer_start(&timer_, &Child::on_timer, spec_.timeout_ms, 0);
  return 0;
}

void Child::on_write(uv_write_t* w, int) {
  // A child that exits without reading its stdin makes the write fail
  // (EPIPE; the agent ignores SIGPIPE): nothing to report, its exit says it.
  auto* self = static_cast<Child*>(w->data);
  if (self->in_open_) {
    self->in_open_ = false;
    self->close_handle(reinterpret_cast<uv_handle_t*>(&self->in_));
  }
}

void Child::on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* s = static_cast<Stream*>(h->data);
  std::vector<char>& scratch = s->child->scratch_;
  *buf = uv_buf_init(scratch.data(), static_cast<unsigned>(scratch.size()));
}

void Child::on_read(uv_stream_t* st, ssize_t n, const uv_buf_t* buf) {
  auto* s = static_cast<Stream*>(st->data);
  Child* self = s->child;
  if (n > 0) {
    s->total += static_cast<uint64_t>(n);
    const size_t room = self->spec_.max_output - std::min(self->spec_.max_output, s->data.size());
    const size_t keep = std::min(room, static_cast<size_t>(n));
    s->data.append(buf->base, keep);
    if (keep < static_cast<size_t>(n)) self->outcome_.truncated = true;
    return;
  }
  if (n == 0) return;  // EAGAIN
  self->close_stream(*s);  // EOF or an error: nothing more will come
  self->maybe_finish();
}

void Child::close_stream(Stream& s) {
  if (!s.open) return;
  s.open = false;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&s.pipe));
  s.pipe.data = this;
  close_handle(reinterpret_cast<uv_handle_t*>(&s.pipe));
}

void Child::signal_group(int sig) {
  // pid_ leads its group (UV_PROCESS_DETACHED). Before the exit callback
  // the pid cannot be reused (the process is at worst an unreaped zombie);
  // right after it the group may still hold processes, which keeps the
  // group id from being reused too.
  if (pid_ > 0) ::kill(-pid_, sig);
}

void Child::on_exit(uv_process_t* p, int64_t status, int sig) {
  auto* self = static_cast<Child*>(p->data);
  self->exited_ = true;
  self->outcome_.exit = sig ? -1 : status;
  self->outcome_.signal = sig;
  self->signal_group(SIGKILL);  // what the command left behind in its group
  uv_timer_stop(&self->timer_);
  if (self->outcome_.stopped) {
    self->close_stream(self->out_);
    self->close_stream(self->err_);
  } else if (self->out_.open || self->err_.open) {
    // Drain what the pipes still hold; a process that left the group could
    // keep them open for ever: give up after the grace period.
    self->phase_ = Phase::draining;
    uv_timer_start(&self->timer_, &Child::on_timer, std::max<uint64_t>(self->spec_.grace_ms, 100), 0);
  }
  self->maybe_finish();
}

void Child::on_timer(uv_timer_t* t) {
  auto* self = static_cast<Child*>(t->data);
  switch (self->phase_) {
    case Phase::none:
      self->outcome_.timed_out = true;
      self->phase_ = Phase::term_sent;
      self->signal_group(SIGTERM);
      uv_timer_start(t, &Child::on_timer, self->spec_.grace_ms, 0);
      break;
    case Phase::term_sent:
      self->phase_ = Phase::kill_sent;
      self->signal_group(SIGKILL);
      break;
    case Phase::kill_sent: break;
    case Phase::draining:
      self->close_stream(self->out_);
      self->close_stream(self->err_);
      self->maybe_finish();
      break;
  }
}

void Child::kill_now() {
  if (finished_) return;
  outcome_.stopped = true;
  signal_group(SIGKILL);
  if (exited_) {  // only draining: stop now
    close_stream(out_);
    close_stream(err_);
    maybe_finish();
  }
}

void Child::abandon() {
  signal_group(SIGKILL);
  write_req_.cb = nullptr;  // closing stdin cancels a pending write: no callback for it
  std::vector<uv_handle_t*> handles{reinterpret_cast<uv_handle_t*>(&timer_), reinterpret_cast<uv_handle_t*>(&proc_),
                                    reinterpret_cast<uv_handle_t*>(&out_.pipe),
                                    reinterpret_cast<uv_handle_t*>(&err_.pipe)};
  if (spec_.input) handles.push_back(reinterpret_cast<uv_handle_t*>(&in_));
  for (uv_handle_t* h : handles) {
    if (uv_is_closing(h))
      h->close_cb = nullptr;  // already closing (or closed): drop the callback it was given
    else
      uv_close(h, nullptr);
  }
}

void Child::maybe_finish() {
  if (finished_ || !exited_ || out_.open || err_.open) return;
  finished_ = true;
  outcome_.out = std::move(out_.data);
  outcome_.err = std::move(err_.data);
  outcome_.out_bytes = out_.total;
  outcome_.err_bytes = err_.total;
  auto done = std::move(done_);
  done(std::move(outcome_));
  close_all();
}

void Child::close_all() {
  closing_ = true;
  ++handles_;  // hold: close callbacks never run inside uv_close, but be explicit
  close_stream(out_);
  close_stream(err_);
  if (in_open_) {
    in_open_ = false;
    close_handle(reinterpret_cast<uv_handle_t*>(&in_));
  }
  uv_timer_stop(&timer_);
  close_handle(reinterpret_cast<uv_handle_t*>(&timer_));
  close_handle(reinterpret_cast<uv_handle_t*>(&proc_));
  if (--handles_ == 0) reaped_(this);
}

}  // namespace hostlet::exec
