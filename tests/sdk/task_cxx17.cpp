// Must not compile: task.hpp under -std=c++17 stops at its #error, which
// says it needs C++20 (tests/sdk/meson.build).
#include <hostlet/task.hpp>
