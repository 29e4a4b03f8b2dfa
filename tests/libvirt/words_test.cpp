// The words hostlet publishes for libvirt's enums (plugins/libvirt/words.cpp).
#include <catch2/catch.hpp>

#include "words.hpp"

#include <libvirt/libvirt.h>

#include <set>

using namespace hostlet_virt;

TEST_CASE("words: lifecycle events and their details", "[words]") {
  CHECK(event_word(VIR_DOMAIN_EVENT_STARTED) == "started");
  CHECK(event_detail_word(VIR_DOMAIN_EVENT_STARTED, VIR_DOMAIN_EVENT_STARTED_BOOTED) == "booted");
  CHECK(event_word(VIR_DOMAIN_EVENT_STOPPED) == "stopped");
  CHECK(event_detail_word(VIR_DOMAIN_EVENT_STOPPED, VIR_DOMAIN_EVENT_STOPPED_DESTROYED) == "destroyed");
  CHECK(event_detail_word(VIR_DOMAIN_EVENT_DEFINED, VIR_DOMAIN_EVENT_DEFINED_ADDED) == "added");
  CHECK(event_detail_word(VIR_DOMAIN_EVENT_UNDEFINED, VIR_DOMAIN_EVENT_UNDEFINED_REMOVED) == "removed");
  CHECK(event_detail_word(VIR_DOMAIN_EVENT_SUSPENDED, VIR_DOMAIN_EVENT_SUSPENDED_PAUSED) == "paused");
  CHECK(event_detail_word(VIR_DOMAIN_EVENT_SUSPENDED, VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY_FAILED) == "postcopy-failed");
  CHECK(event_detail_word(VIR_DOMAIN_EVENT_RESUMED, VIR_DOMAIN_EVENT_RESUMED_UNPAUSED) == "unpaused");
  CHECK(event_detail_word(VIR_DOMAIN_EVENT_SHUTDOWN, VIR_DOMAIN_EVENT_SHUTDOWN_GUEST) == "guest");
  CHECK(event_detail_word(VIR_DOMAIN_EVENT_PMSUSPENDED, VIR_DOMAIN_EVENT_PMSUSPENDED_DISK) == "disk");
  CHECK(event_detail_word(VIR_DOMAIN_EVENT_CRASHED, VIR_DOMAIN_EVENT_CRASHED_CRASHLOADED) == "crashloaded");
}

TEST_CASE("words: every known event type and detail has a distinct word", "[words]") {
  const int details[] = {4, 2, 5, 9, 5, 7, 3, 2, 2};  // per virDomainEventType, libvirt 9.0
  std::set<std::string> types;
  for (int e = 0; e <= VIR_DOMAIN_EVENT_CRASHED; e++) {
    std::string w = event_word(e);
    CHECK(w.rfind("unknown", 0) != 0);
    types.insert(w);
    std::set<std::string> seen;
    for (int d = 0; d < details[e]; d++) {
      std::string dw = event_detail_word(e, d);
      INFO("event " << e << " detail " << d);
      CHECK(dw.rfind("unknown", 0) != 0);
      CHECK(dw.find(' ') == std::string::npos);
      seen.insert(dw);
    }
    CHECK(seen.size() == static_cast<size_t>(details[e]));
    CHECK(event_detail_word(e, details[e]) == "unknown-" + std::to_string(details[e]));
  }
  CHECK(types.size() == 9);
}

TEST_CASE("words: values a newer libvirt may add read unknown-N", "[words]") {
  CHECK(event_word(9) == "unknown-9");
  CHECK(event_word(-1) == "unknown--1");
  CHECK(event_detail_word(42, 3) == "unknown-3");
  CHECK(state_word(8) == "unknown-8");
  CHECK(state_reason_word(VIR_DOMAIN_RUNNING, 12) == "unknown-12");
  CHECK(state_reason_word(99, 1) == "unknown-1");
  CHECK(watchdog_action_word(7) == "unknown-7");
  CHECK(close_reason_word(4) == "unknown-4");
}

TEST_CASE("words: domain states and reasons", "[words]") {
  CHECK(state_word(VIR_DOMAIN_RUNNING) == "running");
  CHECK(state_word(VIR_DOMAIN_PAUSED) == "paused");
  CHECK(state_word(VIR_DOMAIN_SHUTOFF) == "shutoff");
  CHECK(state_word(VIR_DOMAIN_PMSUSPENDED) == "pmsuspended");
  CHECK(state_reason_word(VIR_DOMAIN_RUNNING, VIR_DOMAIN_RUNNING_BOOTED) == "booted");
  CHECK(state_reason_word(VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_USER) == "user");
  CHECK(state_reason_word(VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_DESTROYED) == "destroyed");
  CHECK(state_reason_word(VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_DAEMON) == "daemon");
  CHECK(state_reason_word(VIR_DOMAIN_CRASHED, VIR_DOMAIN_CRASHED_PANICKED) == "panicked");
  CHECK(state_reason_word(VIR_DOMAIN_BLOCKED, 0) == "unknown");
}

TEST_CASE("words: watchdog actions and close reasons", "[words]") {
  CHECK(watchdog_action_word(VIR_DOMAIN_EVENT_WATCHDOG_RESET) == "reset");
  CHECK(watchdog_action_word(VIR_DOMAIN_EVENT_WATCHDOG_INJECTNMI) == "inject-nmi");
  CHECK(close_reason_word(VIR_CONNECT_CLOSE_REASON_EOF) == "eof");
  CHECK(close_reason_word(VIR_CONNECT_CLOSE_REASON_KEEPALIVE) == "keepalive");
}
