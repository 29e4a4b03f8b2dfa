// libvirt's enums as the words hostlet publishes and answers with: domain
// lifecycle events and their details, domain states and their reasons,
// watchdog actions, connection close reasons. Lower case, '-' between words,
// "unknown-N" for a value this table does not know (a newer libvirt).
#pragma once

#include <string>

namespace hostlet_virt {

std::string event_word(int event);              // virDomainEventType: "started"
std::string event_detail_word(int event, int detail);  // "booted", "destroyed", ...
std::string state_word(int state);              // virDomainState: "running"
std::string state_reason_word(int state, int reason);  // virDomain<State>Reason: "booted"
std::string watchdog_action_word(int action);   // virDomainEventWatchdogAction: "reset"
std::string close_reason_word(int reason);      // virConnectCloseReason: "keepalive"

}  // namespace hostlet_virt
