// The one loop fixture of the unit tests: a private libuv loop that the
// destructor runs until nothing is left, then requires uv_loop_close() == 0
// (libuv's MAKE_VALGRIND_HAPPY). Tests close their own handles first.
#pragma once

#include <catch2/catch.hpp>
#include <uv.h>

#include <cstdint>
#include <exception>

namespace hostlet::test {

class TestLoop {
 public:
  TestLoop() { REQUIRE(uv_loop_init(&loop) == 0); }
  ~TestLoop() noexcept(false) {
    uv_run(&loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&loop);
    if (std::uncaught_exceptions() > 0) CHECK(rc == 0);
    else REQUIRE(rc == 0);
  }
  TestLoop(const TestLoop&) = delete;
  TestLoop& operator=(const TestLoop&) = delete;

  void run() { uv_run(&loop, UV_RUN_DEFAULT); }
  // Runs the loop for about `ms`, also when only unref'd handles are active
  // (an unref'd timer alone would not keep uv_run going).
  void run_for(uint64_t ms) {
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    uv_timer_start(&t, [](uv_timer_t*) {}, ms, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_close(reinterpret_cast<uv_handle_t*>(&t), nullptr);
    uv_run(&loop, UV_RUN_DEFAULT);
  }

  uv_loop_t loop{};
};

}  // namespace hostlet::test
