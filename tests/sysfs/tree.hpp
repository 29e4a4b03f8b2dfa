// A throw-away directory tree for the sysfs unit tests, removed on destruction.
#pragma once

#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

namespace hostlet::sysfs::test {

class Tree {
 public:
  Tree() {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/hostlet-sysfs-XXXXXX";
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    char* real = realpath(tmpl.c_str(), nullptr);
    path_ = real;
    free(real);
  }
  ~Tree() {
    nftw(path_.c_str(), [](const char* p, const struct stat*, int, FTW*) { return ::remove(p); }, 16,
         FTW_DEPTH | FTW_PHYS);
  }
  Tree(const Tree&) = delete;
  Tree& operator=(const Tree&) = delete;

  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

  void dir(const std::string& rel) const {
    std::string p = path_;
    std::stringstream ss(rel);
    std::string part;
    while (std::getline(ss, part, '/')) {
      p += "/" + part;
      ::mkdir(p.c_str(), 0755);
    }
  }
  void file(const std::string& rel, const std::string& content) const {
    auto slash = rel.rfind('/');
    if (slash != std::string::npos) dir(rel.substr(0, slash));
    std::ofstream(path_ + "/" + rel, std::ios::binary | std::ios::trunc) << content;
  }
  void link(const std::string& target, const std::string& rel) const {
    auto slash = rel.rfind('/');
    if (slash != std::string::npos) dir(rel.substr(0, slash));
    if (::symlink(target.c_str(), (path_ + "/" + rel).c_str()) != 0) throw std::runtime_error("symlink failed");
  }
  std::string read(const std::string& rel) const {
    std::ifstream in(path_ + "/" + rel, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  std::string path_;
};

}  // namespace hostlet::sysfs::test
