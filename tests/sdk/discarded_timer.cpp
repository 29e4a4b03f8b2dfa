// Must not compile with -Werror: a discarded Timer would stop at once, and
// Host::timer is [[nodiscard]] (tests/sdk/meson.build: should_fail).
#include <hostlet/plugin.hpp>

void arm(hostlet::Host& host) { host.timer(100, 100, [] {}); }
