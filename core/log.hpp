// Log lines to stderr: "TIME LEVEL [who] message", or, when stderr is the
// journal (JOURNAL_STREAM names it), "<P>[who] message" with the syslog
// priority P (3 error, 4 warning, 6 info, 7 debug) and no time of its own.
// A flood of warnings or errors from one place (same who, same format) is
// cut to the first 5 per 10 s, then one "... N more like this in 10s" line.
// Thread-safe: each line is formatted into one buffer and written with one
// write(2), so lines from pool threads never interleave.
#pragma once

#include <cstdarg>
#include <string_view>

namespace hostlet {

enum class Level { Error = 0, Warn = 1, Info = 2, Debug = 3 };

void set_log_level(Level level);
Level log_level();
bool log_enabled(Level level);
// "error", "warn", "info", "debug" (also "warning"); false when unknown.
bool parse_log_level(std::string_view text, Level& out);
const char* level_name(Level level);

// `who` is an instance name or "hostlet" for the core.
void log(Level level, std::string_view who, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
void logv(Level level, std::string_view who, const char* fmt, va_list ap);

// Redirects log output to fd (default 2). Used by tests to capture lines.
void set_log_fd(int fd);
// Switches to the journal format when stderr is the journal; returns whether it is.
bool detect_journal();
// Writes the "... N more like this" lines still pending (at exit).
void log_flush_repeats();

}  // namespace hostlet
