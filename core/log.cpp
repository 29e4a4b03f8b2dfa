#include "log.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>
#include <string>
#include <unordered_map>

namespace hostlet {
namespace {
std::atomic<int> g_level{static_cast<int>(Level::Info)};
std::atomic<int> g_fd{2};
std::atomic<bool> g_journal{false};

// Repeat suppression of warnings and errors, as journald's and rsyslog's rate limits do it: per key
// (who + the format string), the first kBurst lines of a kWindowNs window
// are written, the rest counted; when the window has passed, one line says
// how many were dropped. The map is scanned for ended windows at most once a
// second, so a flood costs one lookup per line.
constexpr unsigned kBurst = 5;
constexpr uint64_t kWindowNs = 10'000'000'000ull;
constexpr size_t kMaxKeys = 4096;

struct Burst {
  uint64_t start_ns = 0;
  unsigned shown = 0;
  uint64_t dropped = 0;
  Level level = Level::Info;
  std::string who, last;  // the last dropped line's message
};
std::mutex g_mu;
std::unordered_map<std::string, Burst> g_bursts;
uint64_t g_scanned_ns = 0;

uint64_t mono_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

int syslog_priority(Level level) {
  switch (level) {
    case Level::Error: return 3;
    case Level::Warn: return 4;
    case Level::Info: return 6;
    case Level::Debug: return 7;
  }
  return 6;
}

void write_all(const char* p, size_t len) {
  while (len > 0) {
    ssize_t w = ::write(g_fd.load(std::memory_order_relaxed), p, len);
    if (w < 0) return;  // nowhere to report a failing stderr
    p += w;
    len -= static_cast<size_t>(w);
  }
}

// One line: "<P>[who] message" in the journal, "TIME LEVEL [who] message" elsewhere.
void emit(Level level, std::string_view who, const char* message) {
  char buf[4096];
  int n;
  if (g_journal.load(std::memory_order_relaxed)) {
    n = snprintf(buf, sizeof buf, "<%d>[%.*s] ", syslog_priority(level), static_cast<int>(who.size()), who.data());
  } else {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    n = snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s [%.*s] ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                 level_name(level), static_cast<int>(who.size()), who.data());
  }
  if (n < 0) return;
  size_t len = static_cast<size_t>(n);
  if (len < sizeof buf) {
    int m = snprintf(buf + len, sizeof buf - len, "%s", message);
    if (m > 0) len += static_cast<size_t>(m);
  }
  if (len >= sizeof buf - 1) {  // truncated: keep the line a line
    len = sizeof buf - 5;
    buf[len++] = '.';
    buf[len++] = '.';
    buf[len++] = '.';
  }
  buf[len++] = '\n';
  write_all(buf, len);
}

// Writes the "repeated" line of a burst whose window ended (g_mu held).
void report_dropped(const Burst& b) {
  if (b.dropped == 0) return;
  std::string msg = "... " + std::to_string(b.dropped) + " more like this in " +
                    std::to_string(kWindowNs / 1000000000ull) + "s, the last: " + b.last;
  emit(b.level, b.who, msg.c_str());
}

void scan_ended(uint64_t now) {
  if (now - g_scanned_ns < 1000000000ull && g_bursts.size() < kMaxKeys) return;
  g_scanned_ns = now;
  for (auto it = g_bursts.begin(); it != g_bursts.end();) {
    if (now - it->second.start_ns >= kWindowNs || g_bursts.size() >= kMaxKeys) {
      report_dropped(it->second);
      it = g_bursts.erase(it);
    } else {
      ++it;
    }
  }
}
}  // namespace

void set_log_level(Level level) { g_level.store(static_cast<int>(level), std::memory_order_relaxed); }
Level log_level() { return static_cast<Level>(g_level.load(std::memory_order_relaxed)); }
bool log_enabled(Level level) { return static_cast<int>(level) <= g_level.load(std::memory_order_relaxed); }
void set_log_fd(int fd) { g_fd.store(fd, std::memory_order_relaxed); }

bool detect_journal() {
  // systemd sets JOURNAL_STREAM to "DEV:INODE" of the stream it connected to
  // stdout and stderr; it counts only if stderr still is that stream.
  const char* js = getenv("JOURNAL_STREAM");
  struct stat st;
  unsigned long long dev = 0, ino = 0;
  bool on = js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(2, &st) == 0 &&
            static_cast<unsigned long long>(st.st_dev) == dev && static_cast<unsigned long long>(st.st_ino) == ino;
  g_journal.store(on, std::memory_order_relaxed);
  return on;
}

bool parse_log_level(std::string_view text, Level& out) {
  if (text == "error") out = Level::Error;
  else if (text == "warn" || text == "warning") out = Level::Warn;
  else if (text == "info") out = Level::Info;
  else if (text == "debug") out = Level::Debug;
  else return false;
  return true;
}

const char* level_name(Level level) {
  switch (level) {
    case Level::Error: return "ERROR";
    case Level::Warn: return "WARN ";
    case Level::Info: return "INFO ";
    case Level::Debug: return "DEBUG";
  }
  return "?????";
}

void logv(Level level, std::string_view who, const char* fmt, va_list ap) {
  if (!log_enabled(level)) return;
  char message[4096];
  if (vsnprintf(message, sizeof message, fmt, ap) < 0) return;
  if (level > Level::Warn) {  // only warnings and errors come in floods worth cutting
    emit(level, who, message);
    return;
  }
  std::string key;
  key.reserve(who.size() + 1 + strlen(fmt));
  key.append(who).push_back('\x1f');
  key.append(fmt);
  std::lock_guard<std::mutex> lk(g_mu);
  uint64_t now = mono_ns();
  scan_ended(now);
  Burst& b = g_bursts[key];
  if (b.start_ns == 0 || now - b.start_ns >= kWindowNs) {
    report_dropped(b);
    b = Burst{now, 0, 0, level, std::string(who), {}};
  }
  if (b.shown < kBurst) {
    b.shown++;
    emit(level, who, message);
    return;
  }
  b.dropped++;
  b.last = message;
}

void log(Level level, std::string_view who, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  logv(level, who, fmt, ap);
  va_end(ap);
}

void log_flush_repeats() {
  std::lock_guard<std::mutex> lk(g_mu);
  for (auto& [key, b] : g_bursts) report_dropped(b);
  g_bursts.clear();
}

}  // namespace hostlet
