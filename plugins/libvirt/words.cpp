#include "words.hpp"

#include <libvirt/libvirt.h>

#include <array>
#include <cstddef>
#include <span>

namespace hostlet_virt {
namespace {

using Words = std::span<const char* const>;

template <size_t N> constexpr Words words(const std::array<const char*, N>& a) { return Words(a); }

std::string pick(Words table, int value) {
  if (value >= 0 && static_cast<size_t>(value) < table.size()) return table[static_cast<size_t>(value)];
  return "unknown-" + std::to_string(value);
}

// Indexed by value; the static_asserts catch a header that renumbers.
constexpr std::array<const char*, 9> kEvents = {
    "defined", "undefined", "started", "suspended", "resumed",
    "stopped", "shutdown", "pmsuspended", "crashed"};
static_assert(VIR_DOMAIN_EVENT_CRASHED == 8);

constexpr std::array<const char*, 4> kDefined = {"added", "updated", "renamed", "from-snapshot"};
static_assert(VIR_DOMAIN_EVENT_DEFINED_FROM_SNAPSHOT == 3);
constexpr std::array<const char*, 2> kUndefined = {"removed", "renamed"};
static_assert(VIR_DOMAIN_EVENT_UNDEFINED_RENAMED == 1);
constexpr std::array<const char*, 5> kStarted = {"booted", "migrated", "restored", "from-snapshot",
                                                  "wakeup"};
static_assert(VIR_DOMAIN_EVENT_STARTED_WAKEUP == 4);
constexpr std::array<const char*, 9> kSuspended = {
    "paused", "migrated", "ioerror", "watchdog", "restored",
    "from-snapshot", "api-error", "postcopy", "postcopy-failed"};
static_assert(VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY_FAILED == 8);
constexpr std::array<const char*, 5> kResumed = {"unpaused", "migrated", "from-snapshot", "postcopy",
                                                  "postcopy-failed"};
static_assert(VIR_DOMAIN_EVENT_RESUMED_POSTCOPY_FAILED == 4);
constexpr std::array<const char*, 7> kStopped = {"shutdown", "destroyed", "crashed", "migrated",
                                                  "saved", "failed", "from-snapshot"};
static_assert(VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT == 6);
constexpr std::array<const char*, 3> kShutdown = {"finished", "guest", "host"};
static_assert(VIR_DOMAIN_EVENT_SHUTDOWN_HOST == 2);
constexpr std::array<const char*, 2> kPmSuspended = {"memory", "disk"};
static_assert(VIR_DOMAIN_EVENT_PMSUSPENDED_DISK == 1);
constexpr std::array<const char*, 2> kCrashed = {"panicked", "crashloaded"};
static_assert(VIR_DOMAIN_EVENT_CRASHED_CRASHLOADED == 1);

constexpr std::array<Words, 9> kDetails = {
    words(kDefined), words(kUndefined), words(kStarted), words(kSuspended), words(kResumed),
    words(kStopped), words(kShutdown), words(kPmSuspended), words(kCrashed)};

constexpr std::array<const char*, 8> kStates = {"nostate", "running", "blocked", "paused",
                                                 "shutdown", "shutoff", "crashed", "pmsuspended"};
static_assert(VIR_DOMAIN_PMSUSPENDED == 7);

constexpr std::array<const char*, 1> kUnknownOnly = {"unknown"};
constexpr std::array<const char*, 12> kRunning = {
    "unknown", "booted", "migrated", "restored", "from-snapshot", "unpaused",
    "migration-canceled", "save-canceled", "wakeup", "crashed", "postcopy", "postcopy-failed"};
static_assert(VIR_DOMAIN_RUNNING_POSTCOPY_FAILED == 11);
constexpr std::array<const char*, 14> kPaused = {
    "unknown", "user", "migration", "save", "dump", "ioerror", "watchdog", "from-snapshot",
    "shutting-down", "snapshot", "crashed", "starting-up", "postcopy", "postcopy-failed"};
static_assert(VIR_DOMAIN_PAUSED_POSTCOPY_FAILED == 13);
constexpr std::array<const char*, 2> kShuttingDown = {"unknown", "user"};
static_assert(VIR_DOMAIN_SHUTDOWN_USER == 1);
constexpr std::array<const char*, 9> kShutoff = {"unknown", "shutdown", "destroyed",
                                                  "crashed", "migrated", "saved",
                                                  "failed", "from-snapshot", "daemon"};
static_assert(VIR_DOMAIN_SHUTOFF_DAEMON == 8);
constexpr std::array<const char*, 2> kCrashedReasons = {"unknown", "panicked"};
static_assert(VIR_DOMAIN_CRASHED_PANICKED == 1);

constexpr std::array<Words, 8> kReasons = {
    words(kUnknownOnly), words(kRunning), words(kUnknownOnly), words(kPaused),
    words(kShuttingDown), words(kShutoff), words(kCrashedReasons), words(kUnknownOnly)};

constexpr std::array<const char*, 7> kWatchdog = {"none", "pause", "reset", "poweroff",
                                                   "shutdown", "debug", "inject-nmi"};
static_assert(VIR_DOMAIN_EVENT_WATCHDOG_INJECTNMI == 6);

constexpr std::array<const char*, 4> kCloseReasons = {"error", "eof", "keepalive", "client"};
static_assert(VIR_CONNECT_CLOSE_REASON_CLIENT == 3);

}  // namespace

std::string event_word(int event) { return pick(kEvents, event); }

std::string event_detail_word(int event, int detail) {
  if (event < 0 || static_cast<size_t>(event) >= kDetails.size()) return "unknown-" + std::to_string(detail);
  return pick(kDetails[static_cast<size_t>(event)], detail);
}

std::string state_word(int state) { return pick(kStates, state); }

std::string state_reason_word(int state, int reason) {
  if (state < 0 || static_cast<size_t>(state) >= kReasons.size()) return "unknown-" + std::to_string(reason);
  return pick(kReasons[static_cast<size_t>(state)], reason);
}

std::string watchdog_action_word(int action) { return pick(kWatchdog, action); }

std::string close_reason_word(int reason) { return pick(kCloseReasons, reason); }

}  // namespace hostlet_virt
