#include "log.hpp"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <ctime>

namespace hostlet {
namespace {
std::atomic<int> g_level{static_cast<int>(Level::Info)};
std::atomic<int> g_fd{2};
}  // namespace

void set_log_level(Level level) { g_level.store(static_cast<int>(level), std::memory_order_relaxed); }
Level log_level() { return static_cast<Level>(g_level.load(std::memory_order_relaxed)); }
bool log_enabled(Level level) { return static_cast<int>(level) <= g_level.load(std::memory_order_relaxed); }
void set_log_fd(int fd) { g_fd.store(fd, std::memory_order_relaxed); }

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
  char buf[4096];
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  int n = snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s [%.*s] ",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                   ts.tv_nsec / 1000000, level_name(level), static_cast<int>(who.size()), who.data());
  if (n < 0) return;
  size_t len = static_cast<size_t>(n);
  if (len < sizeof buf) {
    int m = vsnprintf(buf + len, sizeof buf - len, fmt, ap);
    if (m > 0) len += static_cast<size_t>(m);
  }
  if (len >= sizeof buf - 1) {  // truncated: keep the line a line
    len = sizeof buf - 5;
    buf[len++] = '.'; buf[len++] = '.'; buf[len++] = '.';
  }
  buf[len++] = '\n';
  const char* p = buf;
  while (len > 0) {
    ssize_t w = ::write(g_fd.load(std::memory_order_relaxed), p, len);
    if (w < 0) return;  // nowhere to report a failing stderr
    p += w;
    len -= static_cast<size_t>(w);
  }
}

void log(Level level, std::string_view who, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  logv(level, who, fmt, ap);
  va_end(ap);
}

}  // namespace hostlet
