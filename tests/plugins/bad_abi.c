/* Fixture: a plugin built for a future ABI major. The host must refuse it. */
#include <hostlet/plugin.h>

static int init(hostlet_host *h, const hostlet_host_api *api, void **state) {
  (void)h; (void)api; (void)state;
  return 0;
}
static int start(void *s) { (void)s; return 0; }
static void stop(void *s) { (void)s; }
static void destroy(void *s) { (void)s; }

static const hostlet_plugin desc = {
  .abi_major = HOSTLET_ABI_MAJOR + 1, .abi_minor = 0, .struct_size = sizeof(hostlet_plugin),
  .name = "bad_abi", .version = "1", .description = "fixture: wrong ABI major",
  .init = init, .start = start, .stop = stop, .destroy = destroy,
};
HOSTLET_PLUGIN_ENTRY { return &desc; }
