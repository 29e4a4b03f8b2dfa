/*
 * Fixture: a plugin built for an ABI the host does not speak, a future major
 * (bad_abi) or, built with -DFUTURE_MINOR, the host's major with a newer minor
 * (future_minor). The host must refuse both, naming both versions.
 */
#include <hostlet/plugin.h>

static int init(hostlet_host *h, const hostlet_host_api *api, void **state) {
  (void)h; (void)api; (void)state;
  return 0;
}
static int start(void *s) { (void)s; return 0; }
static void stop(void *s) { (void)s; }
static void destroy(void *s) { (void)s; }

static const hostlet_plugin desc = {
#ifdef FUTURE_MINOR
  .abi_major = HOSTLET_ABI_MAJOR, .abi_minor = HOSTLET_ABI_MINOR + 1, .struct_size = sizeof(hostlet_plugin),
  .name = "future_minor", .version = "1", .description = "fixture: a newer ABI minor",
#else
  .abi_major = HOSTLET_ABI_MAJOR + 1, .abi_minor = 0, .struct_size = sizeof(hostlet_plugin),
  .name = "bad_abi", .version = "1", .description = "fixture: wrong ABI major",
#endif
  .init = init, .start = start, .stop = stop, .destroy = destroy,
};
HOSTLET_PLUGIN_ENTRY { return &desc; }
