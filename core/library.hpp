// The loader: a plugin's .so file found (Library::resolve), checked before the
// dynamic loader sees it (check_elf: a truncated file would SIGBUS the agent),
// copied to a private memory file and dlopen()ed (a rebuilt file at the same
// path is new code), its entry symbol and ABI version checked; dlclose()d when the
// last reference goes, and then checked with RTLD_NOLOAD.
#pragma once

#include <hostlet/plugin.h>

#include <cstdint>
#include <memory>
#include <string>

namespace hostlet {

// A loaded plugin image. dlclose() runs when the last reference goes; every
// Instance and every work item still able to run its code holds one.
class Library {
 public:
  ~Library();
  const hostlet_plugin* desc() const { return desc_; }
  // Descriptor entries added after 1.0, or null when the plugin's descriptor
  // (its struct_size) is too small to hold them.
  decltype(hostlet_plugin::collect) collect_entry() const;
  decltype(hostlet_plugin::refresh) refresh_entry() const;
  const std::string& path() const { return path_; }         // what the config named, resolved
  const std::string& load_path() const { return load_path_; }  // the private copy dlopen()ed: /proc/self/fd/N
  uint64_t serial() const { return serial_; }

  // Identity of the file a library was loaded from, to notice a replaced
  // or rebuilt file (reload on change, `watch: true`).
  struct FileId {
    uint64_t dev = 0, ino = 0, size = 0, mtime_ns = 0;
    bool operator==(const FileId&) const = default;
  };
  const FileId& file_id() const { return file_id_; }
  // Stats `path`; false when it cannot (missing file).
  static bool stat_file(const std::string& path, FileId& out);

  // Copies `path` to a private memory file, dlopen()s it, checks the entry symbol and
  // ABI. On failure returns null and sets err ("... : why").
  static std::shared_ptr<Library> load(const std::string& path, std::string& err);
  // Where `plugin` (a name or a path containing '/') resolves: the configured
  // plugin_dir, else $HOSTLET_PLUGIN_DIR, else next to the binary in a build
  // tree (<exe>/../plugins/<name>/<name>.so), else the install dir; an
  // installed agent (run from its sbindir) skips the build tree.
  // `config_dir` anchors relative paths. Empty with err set when not found.
  static std::string resolve(const std::string& plugin, const std::string& plugin_dir,
                             const std::string& config_dir, std::string& err);
  // Images dlclose()d but still mapped (RTLD_NOLOAD found them): reported, counted.
  static uint64_t unmapped_failures();

 private:
  Library() = default;
  void* handle_ = nullptr;
  const hostlet_plugin* desc_ = nullptr;
  std::string path_, load_path_;
  int copy_fd_ = -1;  // the private copy (a memfd), open while the library lives
  uint64_t serial_ = 0;
  FileId file_id_;
};

}  // namespace hostlet
