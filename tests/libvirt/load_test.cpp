// The plugin file itself: it loads by absolute path (as the agent loads its
// private copy), exports only its entry, and links the system libvirt
// (libvirt.so.0), which its own name "libvirt.so" must not shadow.
#include <catch2/catch.hpp>

#include <cstddef>

#include <hostlet/plugin.h>

#include <dlfcn.h>
#include <link.h>

#include <filesystem>
#include <string>
#include <vector>

namespace {
std::vector<std::string> loaded_objects() {
  std::vector<std::string> v;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* out) {
        static_cast<std::vector<std::string>*>(out)->push_back(info->dlpi_name ? info->dlpi_name : "");
        return 0;
      },
      &v);
  return v;
}
}  // namespace

TEST_CASE("load: the plugin loads from an absolute path and links the system libvirt.so.0", "[load]") {
  const std::string path = VIRT_PLUGIN_PATH;
  REQUIRE(std::filesystem::path(path).filename() == "libvirt.so");
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  INFO(dlerror());
  REQUIRE(h);
  auto entry = reinterpret_cast<hostlet_plugin_entry_fn>(dlsym(h, HOSTLET_PLUGIN_ENTRY_SYMBOL));
  REQUIRE(entry);
  const hostlet_plugin* d = entry();
  REQUIRE(d);
  CHECK(std::string(d->name) == "libvirt");
  CHECK(d->abi_major == HOSTLET_ABI_MAJOR);
  // Only the entry is exported.
  CHECK(dlsym(h, "hostlet_virt_events_acquire") != nullptr);  // from the bridge, a dependency
  CHECK(dlsym(h, "_ZN12hostlet_virt3opsEv") == nullptr);

  // libvirt's API, looked up through the plugin's dependencies, is the system libvirt.so.0.
  void* open_fn = dlsym(h, "virConnectOpen");
  REQUIRE(open_fn);
  Dl_info where{};
  REQUIRE(dladdr(open_fn, &where) != 0);
  const std::string lib = where.dli_fname;
  INFO("virConnectOpen comes from " << lib);
  CHECK(std::filesystem::path(lib).filename() == "libvirt.so.0");
  CHECK(std::filesystem::path(lib).parent_path() != std::filesystem::path(path).parent_path());
  bool bridge = false;
  for (const std::string& o : loaded_objects()) bridge |= o.find("libhostlet-virt-events.so") != std::string::npos;
  CHECK(bridge);

  // The config schema, actions and events are declared.
  size_t keys = 0, actions = 0, events = 0;
  for (const hostlet_config_key* k = d->config; k->key; k++) keys++;
  for (const hostlet_action_info* a = d->actions; a->name; a++) actions++;
  for (const hostlet_event_info* e = d->events; e->type; e++) events++;
  CHECK(keys == 11);
  CHECK(actions == 13);
  CHECK(events == 6);
  // ABI 1.1: metrics through collect and refresh.
  REQUIRE(d->struct_size >= offsetof(hostlet_plugin, refresh) + sizeof d->refresh);
  CHECK(d->collect != nullptr);
  CHECK(d->refresh != nullptr);
  CHECK(dlclose(h) == 0);
  // Unloaded for real (a reload maps new code), while the bridge is marked never to be.
  CHECK(dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD) == nullptr);
}

TEST_CASE("load: the event bridge library is marked nodelete", "[load]") {
  bool found = false, nodelete = false;
  struct Out {
    bool* found;
    bool* nodelete;
  } out{&found, &nodelete};
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* p) {
        auto* o = static_cast<Out*>(p);
        if (!info->dlpi_name || !std::string(info->dlpi_name).ends_with("libhostlet-virt-events.so")) return 0;
        *o->found = true;
        for (int i = 0; i < info->dlpi_phnum; i++) {
          if (info->dlpi_phdr[i].p_type != PT_DYNAMIC) continue;
          auto* dyn = reinterpret_cast<const ElfW(Dyn)*>(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
          for (; dyn->d_tag != DT_NULL; dyn++)
            if (dyn->d_tag == DT_FLAGS_1 && (dyn->d_un.d_val & DF_1_NODELETE)) *o->nodelete = true;
        }
        return 1;
      },
      &out);
  CHECK(found);
  CHECK(nodelete);
}
