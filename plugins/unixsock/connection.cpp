#include "connection.hpp"

#include <unistd.h>

#include <cstring>

namespace hostlet::unixsock {
namespace {

// Buffers that grew this large in a burst are given back once empty.
constexpr size_t kKeepCapacity = 256 * 1024;

void release_if_big(std::string& s) {
  if (s.empty() && s.capacity() > kKeepCapacity) std::string().swap(s);
}

bool blank(std::string_view l) {
  for (char c : l)
    if (c != ' ' && c != '\t') return false;
  return true;
}

}  // namespace

Connection::Connection(ConnectionOwner& owner, const Limits& limits, uint64_t serial)
    : owner_(owner), limits_(limits), serial_(serial) {}

Connection::~Connection() = default;

int Connection::init(uv_loop_t* loop) {
  int r = uv_pipe_init(loop, &pipe_, 0);
  if (r == 0) {
    initialized_ = true;
    pipe_.data = this;
    wreq_.data = this;
    sreq_.data = this;
  }
  return r;
}

bool Connection::read_peer() {
  uv_os_fd_t fd;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(&pipe_), &fd) != 0) return false;
  socklen_t len = sizeof peer_;
  return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer_, &len) == 0;
}

uint64_t Connection::now() const { return uv_now(pipe_.loop); }

int Connection::start(uint64_t now_ms) {
  last_input_ms_ = now_ms;
  int r = uv_read_start(stream(), &Connection::alloc_cb, &Connection::read_cb);
  if (r == 0) reading_ = true;
  return r;
}

void Connection::alloc_cb(uv_handle_t* h, size_t, uv_buf_t* buf) {
  *buf = static_cast<Connection*>(h->data)->owner_.read_buffer();
}

void Connection::read_cb(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  auto* c = static_cast<Connection*>(s->data);
  if (c->discard_) {
    if (n < 0) c->close();  // the client closed (or reset) after its error line
    return;
  }
  if (n > 0) c->on_data(buf->base, static_cast<size_t>(n));
  else if (n == UV_EOF) c->on_eof();
  else if (n < 0) c->close();  // reset by the peer, or another error: nobody to answer
}

// The client finished sending (maybe only its half: it may still read). A last
// line without '\n' counts; once every line is handled and every reply
// written, the connection closes.
void Connection::on_eof() {
  reading_ = false;  // libuv stops reading at EOF
  eof_ = true;
  if (!in_.empty()) in_.push_back('\n');
  paused_ = true;  // maybe_resume() handles what is left, as after a pause
  maybe_resume();
}

void Connection::on_data(const char* data, size_t n) {
  last_input_ms_ = now();
  if (!in_.empty()) {
    // Reading implies in_ holds at most one partial line: complete it first.
    const char* nl = static_cast<const char*>(std::memchr(data, '\n', n));
    if (!nl) {
      in_.append(data, n);
      if (in_.size() > limits_.max_line) too_long();
      return;
    }
    size_t k = static_cast<size_t>(nl - data);
    if (in_.size() + k > limits_.max_line) return too_long();
    if (must_pause()) {
      limit_pause_ = true;
      in_.append(data, n);
      return pause();
    }
    in_.append(data, k);
    processing_ = true;
    bool took = line(in_);
    processing_ = false;
    if (!took) {
      in_.append(data + k, n - k);  // the refused line, its '\n' and the rest
      return pause();
    }
    in_.clear();
    if (closing()) return;
    data += k + 1;
    n -= k + 1;
  }
  size_t used = process(data, n);
  if (closing()) return;
  in_.append(data + used, n - used);
  if (!paused_ && in_.size() > limits_.max_line) too_long();
}

size_t Connection::process(const char* data, size_t n) {
  processing_ = true;
  size_t off = 0;
  while (off < n && !stopped_ && !closing()) {
    if (must_pause()) {
      limit_pause_ = true;
      pause();
      break;
    }
    const char* p = data + off;
    const char* nl = static_cast<const char*>(std::memchr(p, '\n', n - off));
    if (!nl) break;
    size_t len = static_cast<size_t>(nl - p);
    if (len > limits_.max_line) {
      too_long();
      off = n;
      break;
    }
    if (!line(std::string_view(p, len))) {
      pause();  // refused: offered again on retry()
      break;
    }
    off += len + 1;
  }
  processing_ = false;
  return off;
}

bool Connection::line(std::string_view l) {
  if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
  if (blank(l)) return true;
  if (!owner_.on_line(*this, l)) return false;
  lines++;
  return true;
}

bool Connection::must_pause() const {
  return pending_ >= limits_.max_pending || queued_bytes() > limits_.max_write_buffer;
}

void Connection::pause() {
  paused_ = true;
  if (reading_) {
    uv_read_stop(stream());
    reading_ = false;
  }
}

// After a pause for max_pending / max_write_buffer, reading resumes only once
// the backlog fell to half the limit, so that a client at the limit does not
// flip reading on and off for every single reply.
void Connection::maybe_resume() {
  if (!paused_ || processing_ || stopped_ || closing()) return;
  if (must_pause()) return;
  if (limit_pause_ && (pending_ > limits_.max_pending / 2 || queued_bytes() > limits_.max_write_buffer / 2)) return;
  paused_ = false;
  limit_pause_ = false;
  size_t used = process(in_.data(), in_.size());
  if (closing()) return;
  in_.erase(0, used);
  if (paused_ || stopped_) return;
  if (eof_) return drain_and_close();
  if (in_.size() > limits_.max_line) return too_long();
  if (uv_read_start(stream(), &Connection::alloc_cb, &Connection::read_cb) == 0) reading_ = true;
  else close();
}

void Connection::too_long() {
  in_.clear();
  owner_.on_line_too_long(*this);
  close_after_flush(now());
}

void Connection::queued() {
  if (out_.empty()) return;
  if (!output_waiting_) {
    output_waiting_ = true;
    output_since_ms_ = now();
  }
  if (!flush_wanted && !writing_ && !closing_) {
    flush_wanted = true;
    owner_.want_flush(*this);
  }
}

void Connection::flush() {
  flush_wanted = false;
  if (closing_ || writing_ || out_.empty()) return;
  uv_buf_t b = uv_buf_init(out_.data(), static_cast<unsigned>(out_.size()));
  int r = uv_try_write(stream(), &b, 1);
  if (r == UV_EAGAIN) r = 0;
  if (r < 0) return close();  // EPIPE and the like: the client is gone
  size_t sent = static_cast<size_t>(r);
  if (sent == out_.size()) {
    out_.clear();
    release_if_big(out_);
    return after_output();
  }
  if (sent > 0) output_since_ms_ = now();
  wbuf_.swap(out_);  // out_ takes wbuf_'s spare capacity
  out_.clear();
  wsent_ = sent;
  uv_buf_t rest = uv_buf_init(wbuf_.data() + sent, static_cast<unsigned>(wbuf_.size() - sent));
  if (uv_write(&wreq_, stream(), &rest, 1, &Connection::write_cb) != 0) return close();
  writing_ = true;
}

void Connection::write_cb(uv_write_t* req, int status) {
  auto* c = static_cast<Connection*>(req->data);
  c->writing_ = false;
  c->wbuf_.clear();
  c->wsent_ = 0;
  release_if_big(c->wbuf_);
  if (status == UV_ECANCELED) return;  // the handle is closing
  if (status < 0) return c->close();
  c->output_since_ms_ = c->now();
  if (!c->out_.empty()) return c->flush();  // more replies came meanwhile; flush ends in after_output
  c->after_output();
}

void Connection::after_output() {
  if (queued_bytes() > 0) return;
  output_waiting_ = false;
  if (close_after_flush_) return start_shutdown();
  if (close_when_drained_ && pending_ == 0) return hand_over_ ? owner_.hand_over(*this) : close();
  maybe_resume();
}

void Connection::pending_done() {
  if (pending_) pending_--;
  if (closing_) return;
  if (close_when_drained_ && drained()) {
    if (!hand_over_) return close();
    if (!writing_) return owner_.hand_over(*this);  // else after_output, once written
    return;
  }
  maybe_resume();
}

void Connection::stop_reading() {
  stopped_ = true;
  in_.clear();
  if (reading_) {
    uv_read_stop(stream());
    reading_ = false;
  }
}

bool Connection::can_hand_over() const {
  return initialized_ && reading_ && !paused_ && !eof_ && !stopped_ && !closing() && refused_since_ms == 0 &&
         std::memchr(in_.data(), '\n', in_.size()) == nullptr;
}

void Connection::drain_and_hand_over() {
  // Stop reading without dropping in_: what the client sends from now on
  // waits in the socket for the next version.
  stopped_ = true;
  if (reading_) {
    uv_read_stop(stream());
    reading_ = false;
  }
  close_when_drained_ = true;
  hand_over_ = true;
  if (drained() && !writing_) owner_.hand_over(*this);
}

int Connection::fd() const {
  uv_os_fd_t fd = -1;
  return initialized_ && uv_fileno(reinterpret_cast<const uv_handle_t*>(&pipe_), &fd) == 0 ? fd : -1;
}

int Connection::adopt(int fd, std::string partial, uint64_t now_ms) {
  int r = uv_pipe_open(&pipe_, fd);
  if (r != 0) {
    ::close(fd);  // not the handle's
    return r;
  }
  read_peer();
  in_ = std::move(partial);
  return start(now_ms);
}

void Connection::drain_and_close() {
  stop_reading();
  close_when_drained_ = true;
  if (drained() && !writing_) close();
}

void Connection::close_after_flush(uint64_t now_ms) {
  if (closing_ || close_after_flush_) return;
  stop_reading();
  close_after_flush_ = true;
  closing_since_ms_ = now_ms;
  discard_ = true;
  if (uv_read_start(stream(), &Connection::alloc_cb, &Connection::read_cb) == 0) reading_ = true;
  if (queued_bytes() == 0) start_shutdown();
  else queued();
}

void Connection::start_shutdown() {
  if (shutdown_started_ || closing_) return;
  shutdown_started_ = true;
  if (uv_shutdown(&sreq_, stream(), &Connection::shutdown_cb) != 0) close();
}

void Connection::shutdown_cb(uv_shutdown_t* req, int status) {
  auto* c = static_cast<Connection*>(req->data);
  if (status < 0 && status != UV_ECANCELED) c->close();
  // else: wait for the client's EOF (read_cb in discard mode) or the linger deadline
}

void Connection::close() {
  if (closing_ || !initialized_) return;
  closing_ = true;
  reading_ = false;
  uv_close(reinterpret_cast<uv_handle_t*>(&pipe_), &Connection::close_cb);
}

void Connection::close_cb(uv_handle_t* h) {
  auto* c = static_cast<Connection*>(h->data);
  c->handle_closed_ = true;
  c->owner_.on_closed(*c);
}

Connection::Timeout Connection::expired(uint64_t now_ms, uint64_t linger_ms) const {
  if (closing_) return Timeout::none;
  if (close_after_flush_) return now_ms - closing_since_ms_ >= linger_ms ? Timeout::linger : Timeout::none;
  uint64_t idle = limits_.idle_timeout_ms;
  if (idle == 0) return Timeout::none;
  if (output_waiting_ && now_ms - output_since_ms_ >= idle) return Timeout::stuck_output;
  if (pending_ == 0 && !output_waiting_ && !close_when_drained_ && refused_since_ms == 0 &&
      now_ms - last_input_ms_ >= idle)
    return Timeout::idle;
  return Timeout::none;
}

}  // namespace hostlet::unixsock
