#include "library.hpp"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>  // ElfW, __ELF_NATIVE_CLASS
#include <fcntl.h>
#include <sys/mman.h>  // memfd_create
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "edit_distance.hpp"
#include "log.hpp"

#ifndef HOSTLET_PLUGIN_DIR
#define HOSTLET_PLUGIN_DIR "/usr/local/lib/hostlet"
#endif
#ifndef HOSTLET_SBINDIR
#define HOSTLET_SBINDIR "/usr/local/sbin"
#endif

namespace fs = std::filesystem;

namespace hostlet {

namespace {
std::atomic<uint64_t> g_serial{0};
std::atomic<uint64_t> g_unmapped_failures{0};

// The private copy that dlopen() maps: an anonymous memory file (memfd),
// opened as /proc/self/fd/N. Nothing is written to the file system, so a
// noexec /tmp (common on hardened hosts) or a read-only root do not matter
// and nothing is left behind; a file rebuilt at the original path is new code
// to the dynamic loader, since each load is a new file. /proc/PID/maps shows
// it as "/memfd:hostlet-plugin:NAME (deleted)". Returns the fd, or -1 with
// err set.
int private_copy(const std::string& from, const std::string& label, std::string& err) {
  int in = open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) {
    err = std::string("cannot open: ") + strerror(errno);
    return -1;
  }
  int out = memfd_create(label.c_str(), MFD_CLOEXEC);
  if (out < 0) {
    err = std::string("cannot create a private copy (memfd_create): ") + strerror(errno);
    close(in);
    return -1;
  }
  char buf[1 << 16];
  bool ok = true;
  for (;;) {
    ssize_t n = read(in, buf, sizeof buf);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      ok = false;
      break;
    }
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(out, buf + off, static_cast<size_t>(n - off));
      if (w < 0) {
        if (errno == EINTR) continue;
        ok = false;
        break;
      }
      off += w;
    }
    if (!ok) break;
  }
  if (!ok) err = std::string("cannot copy: ") + strerror(errno);
  close(in);
  if (!ok) {
    close(out);
    return -1;
  }
  return out;
}

// dlopen() maps a shared object's segments as its program headers say; a
// file cut short (a build still being written, a failed copy) then faults
// with SIGBUS when the loader touches a page past its end, killing the agent.
// So the headers are checked against the file's size before dlopen().
bool check_elf(const std::string& path, std::string& err) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    err = std::string("cannot open: ") + strerror(errno);
    return false;
  }
  struct stat st;
  bool ok = fstat(fd, &st) == 0;
  uint64_t size = ok ? static_cast<uint64_t>(st.st_size) : 0;
  ElfW(Ehdr) eh{};
  auto read_at = [&](void* buf, size_t n, uint64_t off) {
    return pread(fd, buf, n, static_cast<off_t>(off)) == static_cast<ssize_t>(n);
  };
  auto fail = [&](const std::string& why) {
    err = why;
    close(fd);
    return false;
  };
  if (!ok || size < sizeof eh || !read_at(&eh, sizeof eh, 0) || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0)
    return fail("not an ELF shared object (" + std::to_string(size) + " bytes)");
  if (eh.e_ident[EI_CLASS] != (__ELF_NATIVE_CLASS == 64 ? ELFCLASS64 : ELFCLASS32) || eh.e_type != ET_DYN ||
      eh.e_phentsize != sizeof(ElfW(Phdr)))
    return fail("not a shared object for this machine's word size");
  if (eh.e_phoff > size || static_cast<uint64_t>(eh.e_phnum) * sizeof(ElfW(Phdr)) > size - eh.e_phoff)
    return fail("truncated: program headers past the end of the file (" + std::to_string(size) + " bytes)");
  for (unsigned i = 0; i < eh.e_phnum; i++) {
    ElfW(Phdr) ph{};
    if (!read_at(&ph, sizeof ph, eh.e_phoff + i * sizeof ph)) return fail("cannot read its program headers");
    if (ph.p_type == PT_LOAD && (ph.p_offset > size || ph.p_filesz > size - ph.p_offset))
      return fail("truncated: a loadable segment ends at byte " + std::to_string(ph.p_offset + ph.p_filesz) +
                  " of a " + std::to_string(size) + "-byte file (still being written?)");
  }
  close(fd);
  return true;
}

std::string exe_dir() {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : p.parent_path().string();
}

// Whether this binary is the installed agent (it runs from the sbindir it was
// configured with): then only the install dir holds its plugins, and
// <exe>/../plugins (/usr/plugins) is nobody's.
bool running_installed(const std::string& here) {
  std::error_code ec;
  return !here.empty() && fs::equivalent(here, HOSTLET_SBINDIR, ec);
}
}  // namespace

std::string Library::resolve(const std::string& plugin, const std::string& plugin_dir,
                             const std::string& config_dir, std::string& err) {
  auto exists = [](const std::string& p) {
    struct stat st;
    return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
  };
  if (plugin.find('/') != std::string::npos) {
    std::string p = plugin[0] == '/' || config_dir.empty() ? plugin : config_dir + "/" + plugin;
    if (exists(p)) return p;
    err = "plugin file " + p + " not found";
    return {};
  }
  std::vector<std::string> tried;
  auto candidate = [&](const std::string& p) {
    tried.push_back(p);
    return exists(p);
  };
  const std::string file = plugin + ".so";
  if (!plugin_dir.empty()) {
    if (candidate(plugin_dir + "/" + file)) return tried.back();
  } else {
    const char* env = getenv("HOSTLET_PLUGIN_DIR");
    if (env && *env && candidate(std::string(env) + "/" + file)) return tried.back();
    std::string here = exe_dir();
    if (!here.empty() && !running_installed(here) && candidate(here + "/../plugins/" + plugin + "/" + file))
      return tried.back();
    if (candidate(std::string(HOSTLET_PLUGIN_DIR) + "/" + file)) return tried.back();
  }
  err = "plugin '" + plugin + "' not found (looked for";
  for (size_t i = 0; i < tried.size(); i++) err += (i ? ", " : " ") + tried[i];
  err += ")";
  // Did you mean: the plugins those places hold (NAME.so in a plugin dir,
  // NAME/NAME.so in the build tree).
  std::vector<std::string> known;
  for (const auto& t : tried) {
    fs::path dir = fs::path(t).parent_path();
    const bool build_tree = dir.filename() == plugin;  // <exe>/../plugins/NAME/NAME.so
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(build_tree ? dir.parent_path() : dir, ec)) {
      const std::string name = e.path().filename().string();
      if (build_tree ? exists((e.path() / (name + ".so")).string())
                     : name.size() > 3 && name.compare(name.size() - 3, 3, ".so") == 0 && exists(e.path().string()))
        known.push_back(build_tree ? name : name.substr(0, name.size() - 3));
    }
  }
  std::sort(known.begin(), known.end());
  if (std::string guess = did_you_mean(plugin, known); !guess.empty()) err += "; did you mean '" + guess + "'?";
  return {};
}

bool Library::stat_file(const std::string& path, FileId& out) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return false;
  out.dev = st.st_dev;
  out.ino = st.st_ino;
  out.size = static_cast<uint64_t>(st.st_size);
  out.mtime_ns = static_cast<uint64_t>(st.st_mtim.tv_sec) * 1000000000ull + static_cast<uint64_t>(st.st_mtim.tv_nsec);
  return true;
}

std::shared_ptr<Library> Library::load(const std::string& path, std::string& err) {
  std::shared_ptr<Library> lib(new Library());
  lib->path_ = path;
  stat_file(path, lib->file_id_);  // before the copy: a later replacement compares unequal
  lib->serial_ = ++g_serial;
  std::string cerr;
  lib->copy_fd_ = private_copy(path, "hostlet-plugin:" + fs::path(path).stem().string(), cerr);
  if (lib->copy_fd_ < 0) {
    err = path + ": " + cerr;
    return nullptr;
  }
  lib->load_path_ = "/proc/self/fd/" + std::to_string(lib->copy_fd_);
  if (!check_elf(lib->load_path_, cerr)) {
    err = path + ": cannot load: " + cerr;
    return nullptr;
  }
  lib->handle_ = dlopen(lib->load_path_.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib->handle_) {
    const char* e = dlerror();
    err = path + ": cannot load: " + (e ? e : "unknown dlopen error");
    return nullptr;
  }
  dlerror();
  auto entry = reinterpret_cast<hostlet_plugin_entry_fn>(dlsym(lib->handle_, HOSTLET_PLUGIN_ENTRY_SYMBOL));
  if (!entry) {
    err = path + ": no entry symbol '" HOSTLET_PLUGIN_ENTRY_SYMBOL "' (is it a hostlet plugin?)";
    return nullptr;
  }
  const hostlet_plugin* d = entry();
  if (!d) {
    err = path + ": the entry symbol returned no descriptor";
    return nullptr;
  }
  if (d->abi_major != HOSTLET_ABI_MAJOR || d->abi_minor > HOSTLET_ABI_MINOR) {
    err = path + ": built for plugin ABI " + std::to_string(d->abi_major) + "." + std::to_string(d->abi_minor) +
          ", this agent speaks " + std::to_string(HOSTLET_ABI_MAJOR) + "." + std::to_string(HOSTLET_ABI_MINOR) +
          " (same major and a minor up to " + std::to_string(HOSTLET_ABI_MINOR) + " are loadable)";
    return nullptr;
  }
  if (d->struct_size < offsetof(hostlet_plugin, destroy) + sizeof(d->destroy)) {
    err = path + ": descriptor too small (" + std::to_string(d->struct_size) + " bytes)";
    return nullptr;
  }
  if (!d->name || !*d->name || !d->init || !d->start || !d->stop || !d->destroy) {
    err = path + ": descriptor lacks a name or one of init/start/stop/destroy";
    return nullptr;
  }
  lib->desc_ = d;
  return lib;
}

Library::~Library() {
  // The copy's fd names the image (load_path_) until the check below is done.
  struct CloseCopy {
    int fd;
    ~CloseCopy() {
      if (fd >= 0) close(fd);
    }
  } close_copy{copy_fd_};
  if (!handle_) return;
  desc_ = nullptr;
  if (dlclose(handle_) != 0) {
    const char* e = dlerror();
    log(Level::Warn, "hostlet", "dlclose %s: %s", path_.c_str(), e ? e : "failed");
  }
  // Did the image really go? A STB_GNU_UNIQUE symbol or a nodelete flag pins it.
  if (void* again = dlopen(load_path_.c_str(), RTLD_NOW | RTLD_NOLOAD)) {
    dlclose(again);
    g_unmapped_failures++;
    log(Level::Warn, "hostlet",
        "plugin %s is still mapped after dlclose (built without -fno-gnu-unique, or marked nodelete); "
        "its old code stays in memory",
        path_.c_str());
  }
}

uint64_t Library::unmapped_failures() { return g_unmapped_failures.load(); }

namespace {
template <class M> bool covers(const hostlet_plugin* d, size_t offset) {
  return d && d->struct_size >= offset + sizeof(M);
}
}  // namespace

decltype(hostlet_plugin::collect) Library::collect_entry() const {
  return covers<decltype(hostlet_plugin::collect)>(desc_, offsetof(hostlet_plugin, collect)) ? desc_->collect
                                                                                             : nullptr;
}
decltype(hostlet_plugin::refresh) Library::refresh_entry() const {
  return covers<decltype(hostlet_plugin::refresh)>(desc_, offsetof(hostlet_plugin, refresh)) ? desc_->refresh
                                                                                             : nullptr;
}

}  // namespace hostlet
