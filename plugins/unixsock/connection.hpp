// One accepted client of a unixsock listener: line framing, the output
// queue, backpressure and timeouts. What a line means is the owner's business
// (plugin.cpp); this file only moves bytes, with every buffer bounded:
//
//   input   a partial line is kept up to max_line bytes; beyond that the
//           client gets an error line and is closed.
//   replies pending `ack: done` replies are counted; at max_pending the
//           connection stops reading (uv_read_stop) until some are answered.
//   output  unsent replies are counted; above max_write_buffer the connection
//           stops reading until the client takes its replies. A client whose
//           output does not move for idle_timeout is closed.
#pragma once

#include <uv.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <list>
#include <string>
#include <string_view>

namespace hostlet::unixsock {

struct Limits {
  size_t max_line = 64 * 1024;
  size_t max_pending = 128;
  size_t max_write_buffer = 1024 * 1024;
  uint64_t idle_timeout_ms = 300000;  // 0: never
};

class Connection;

// What a connection needs from the listener that owns it. Every call is on the loop thread.
class ConnectionOwner {
 public:
  // One complete line, without '\n' and a trailing '\r', never blank.
  // Returns false to refuse it for now (the agent's event queue is full): the
  // connection then stops reading, keeps the line, and offers it again when
  // the owner calls retry().
  virtual bool on_line(Connection& c, std::string_view line) = 0;
  // The client sent more than max_line bytes without a newline; the owner
  // queues an error reply; the connection then closes itself.
  virtual void on_line_too_long(Connection& c) = 0;
  // Output was queued: call c.flush() soon (the owner batches writes per loop turn).
  virtual void want_flush(Connection& c) = 0;
  // The handle is closed. The owner frees the object once c.can_free().
  virtual void on_closed(Connection& c) = 0;
  // A buffer for one read; used only until the read callback returns.
  virtual uv_buf_t read_buffer() = 0;
  // drain_and_hand_over() is done: every reply is written. The owner passes
  // the connection on (the fd store) and closes the handle.
  virtual void hand_over(Connection& c) = 0;

 protected:
  ~ConnectionOwner() = default;
};

class Connection {
 public:
  enum class Timeout { none, idle, stuck_output, linger };

  Connection(ConnectionOwner& owner, const Limits& limits, uint64_t serial);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection();

  // uv_pipe_init; on success the handle must be closed with close() before the object is freed.
  int init(uv_loop_t* loop);
  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&pipe_); }
  uint64_t serial() const { return serial_; }
  // Reads SO_PEERCRED once accepted; false when the kernel does not say.
  bool read_peer();
  const ucred& peer() const { return peer_; }

  // Starts reading lines.
  int start(uint64_t now_ms);

  // Output: append complete reply lines to out(), then call queued().
  std::string& out() { return out_; }
  void queued();
  // Writes what is queued: uv_try_write, the rest with one uv_write.
  void flush();
  size_t queued_bytes() const { return out_.size() + (writing_ ? wbuf_.size() - wsent_ : 0); }

  // Offers a refused line again (and reads on) unless a limit still holds.
  void retry() { maybe_resume(); }

  // `ack: done` replies this connection waits for.
  void pending_add() { pending_++; }
  void pending_done();
  size_t pending() const { return pending_; }

  // Handles no more input; once the queued output (an error line) is written,
  // shuts down the sending side and closes when the client closes, or after
  // the linger deadline. Input meanwhile is read and discarded, because
  // closing a Unix socket with unread input resets it, and the client could
  // lose the error line.
  void close_after_flush(uint64_t now_ms);
  void close();
  bool closing() const { return closing_ || close_after_flush_; }
  bool handle_closed() const { return handle_closed_; }
  bool handle_open() const { return initialized_ && !handle_closed_; }
  // False once close() was called: nothing more may be queued.
  bool writable() const { return initialized_ && !closing_; }
  bool can_free() const { return (handle_closed_ || !initialized_) && pending_ == 0; }
  // Reads no more; closes once every pending reply is answered and written
  // (at end of input, and when the instance stops).
  void drain_and_close();
  bool drained() const { return pending_ == 0 && queued_bytes() == 0; }
  // Bytes of an incomplete line received so far (for the idle-timeout message).
  size_t partial_bytes() const { return in_.size(); }

  // Reload handover. True when the connection's whole state is its fd and a
  // partial line: reading normally, no refused or held line, not closing.
  bool can_hand_over() const;
  // Stops reading and keeps the partial line; once every pending reply is
  // answered and written, owner.hand_over(*this) instead of closing.
  void drain_and_hand_over();
  const std::string& partial() const { return in_; }
  // The socket's fd (-1 if none).
  int fd() const;
  // Serves an fd a previous instance handed over, whose client already sent
  // `partial` of its next line (after init(); the peer is read again).
  int adopt(int fd, std::string partial, uint64_t now_ms);

  // Which deadline, if any, has passed at now_ms (the owner's periodic sweep).
  Timeout expired(uint64_t now_ms, uint64_t linger_ms) const;

  // Used by the owner's flush batching, its retry list and its list of connections.
  bool flush_wanted = false;
  bool retry_wanted = false;
  uint64_t refused_since_ms = 0;  // 0: the current line was not refused
  std::list<Connection>::iterator self;

  // Counted against max_connections (refused clients are not).
  bool admitted = false;
  uint64_t lines = 0;

 private:
  static void alloc_cb(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void read_cb(uv_stream_t* s, ssize_t n, const uv_buf_t* buf);
  static void write_cb(uv_write_t* req, int status);
  static void close_cb(uv_handle_t* h);
  static void shutdown_cb(uv_shutdown_t* req, int status);
  void start_shutdown();

  void on_data(const char* data, size_t n);
  void on_eof();
  // Handles the complete lines of data[0, n); returns how many bytes it consumed.
  size_t process(const char* data, size_t n);
  bool line(std::string_view l);
  bool must_pause() const;
  void pause();
  void maybe_resume();
  void too_long();
  void after_output();
  void stop_reading();
  uint64_t now() const;

  ConnectionOwner& owner_;
  const Limits& limits_;
  uint64_t serial_;
  uv_pipe_t pipe_{};
  uv_write_t wreq_{};
  uv_shutdown_t sreq_{};
  ucred peer_{-1, static_cast<uid_t>(-1), static_cast<gid_t>(-1)};

  std::string in_;    // unprocessed input: a partial line, or held lines while paused
  std::string out_;   // replies not yet handed to the kernel or to uv_write
  std::string wbuf_;  // the buffer of the uv_write in flight
  size_t wsent_ = 0;  // bytes of wbuf_ that try_write already sent
  size_t pending_ = 0;

  uint64_t last_input_ms_ = 0;   // last byte received
  uint64_t output_since_ms_ = 0; // output queued and not moving since then
  uint64_t closing_since_ms_ = 0;

  bool initialized_ = false;
  bool reading_ = false;
  bool paused_ = false;      // stopped reading for backpressure
  bool limit_pause_ = false; // ... because of max_pending / max_write_buffer
  bool eof_ = false;         // the client sent its last byte
  bool stopped_ = false;     // stopped reading for good (stop_reading / close_after_flush)
  bool processing_ = false;  // inside process(): no re-entrant resume
  bool writing_ = false;     // a uv_write is in flight
  bool output_waiting_ = false;   // output queued since output_since_ms_
  bool close_after_flush_ = false;
  bool close_when_drained_ = false;
  bool hand_over_ = false;   // at drained: owner_.hand_over() instead of close()
  bool discard_ = false;        // lingering after close_after_flush: input is dropped
  bool shutdown_started_ = false;
  bool closing_ = false;     // uv_close called
  bool handle_closed_ = false;
};

}  // namespace hostlet::unixsock
