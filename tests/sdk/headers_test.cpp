// Runs after the generated include tests (tests/sdk/meson.build) compiled and
// linked into this program: each public header compiled alone, as C and C++.
// What is left to check at run time is the part of the ABI that must never
// move: the fields a host reads before it knows the plugin's version.
#include <hostlet/plugin.h>

#include <cstddef>
#include <cstdio>
#include <cstring>
#include <initializer_list>

static_assert(offsetof(hostlet_plugin, abi_major) == 0, "hostlet_plugin must start with abi_major");
static_assert(offsetof(hostlet_plugin, abi_minor) == sizeof(uint32_t), "abi_minor follows abi_major");
static_assert(offsetof(hostlet_host_api, struct_size) == 0, "hostlet_host_api must start with its size");
static_assert(offsetof(hostlet_offload_opts, struct_size) == 0, "hostlet_offload_opts must start with its size");

int main() {
  int failures = 0;
  auto expect = [&](bool ok, const char* what) {
    if (!ok) {
      std::fprintf(stderr, "FAILED: %s\n", what);
      failures++;
    }
  };
  expect(std::strcmp(HOSTLET_PLUGIN_ENTRY_SYMBOL, "hostlet_plugin_entry") == 0, "entry symbol name");
  expect(std::strcmp(hostlet_strerror(0), "ok") == 0, "hostlet_strerror(0)");
  for (int err : {-EAGAIN, -ECANCELED, -ETIMEDOUT, -ESHUTDOWN, -ENOENT, -12345})
    expect(hostlet_strerror(err) != nullptr && *hostlet_strerror(err) != '\0', "hostlet_strerror is never empty");
  if (failures == 0) std::printf("public headers compile alone as C99/C11 and C++17/C++20; ABI prefix in place\n");
  return failures == 0 ? 0 : 1;
}
