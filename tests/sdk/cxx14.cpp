// Must not compile: plugin.hpp under -std=c++14 stops at its #error, which
// says it needs C++17 (tests/sdk/meson.build: should_fail).
#include <hostlet/plugin.hpp>
