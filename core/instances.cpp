#include "instances.hpp"

#include <algorithm>

#include "clock.hpp"

namespace hostlet {

void dispose_instance(std::unique_ptr<Instance> inst, std::function<void()> after) {
  Instance* raw = inst.release();
  raw->lane().close([raw, after = std::move(after)] {
    delete raw;
    if (after) after();
  });
}

Instance* InstanceSet::find(std::string_view name) const {
  for (const auto& i : list_)
    if (i->name() == name) return i.get();
  return nullptr;
}

std::unique_ptr<Instance> InstanceSet::make(const InstanceSection& sec, const std::shared_ptr<Library>& lib,
                                            const std::string& file, bool staged, ConfigErrors& errs) {
  ConfigValues values;
  Mark where = sec.config_mark.line ? sec.config_mark : sec.mark;
  size_t before = errs.size();
  validate_plugin_config(file, sec.config, where, lib->desc()->config, values, errs);
  if (errs.size() != before) return nullptr;
  auto inst = std::make_unique<Instance>(core_, sec, lib, std::move(values), file);
  if (staged) {
    core_.actions->stage(inst.get());
    core_.bus->park(inst.get());
  }
  int r = inst->init();
  if (r != 0) {
    // The plugin's own words (set_error) when it gave some, else its errno.
    std::string why = inst->init_error().empty() ? std::string(hostlet_strerror(r)) + " (init failed)"
                                                 : inst->init_error();
    if (staged) {
      core_.actions->discard(inst.get());
      core_.bus->release(inst.get(), nullptr);
    }
    dispose_instance(std::move(inst));
    errs.push_back({file, sec.mark,
                    "instance '" + sec.name + "': plugin '" + lib->desc()->name + "' rejected its config: " + why});
    return nullptr;
  }
  return inst;
}

void InstanceSet::insert(size_t place, std::unique_ptr<Instance> inst) {
  list_.insert(list_.begin() + static_cast<std::ptrdiff_t>(std::min(place, list_.size())), std::move(inst));
}

std::unique_ptr<Instance> InstanceSet::take(const Instance* inst, size_t* place) {
  auto it = std::find_if(list_.begin(), list_.end(), [&](const auto& i) { return i.get() == inst; });
  if (it == list_.end()) return nullptr;
  if (place) *place = static_cast<size_t>(it - list_.begin());
  std::unique_ptr<Instance> out = std::move(*it);
  list_.erase(it);
  return out;
}

std::unique_ptr<Instance> InstanceSet::replace(const Instance* old, std::unique_ptr<Instance> next) {
  auto it = std::find_if(list_.begin(), list_.end(), [&](const auto& i) { return i.get() == old; });
  if (it == list_.end()) {
    if (next) list_.push_back(std::move(next));
    return nullptr;
  }
  std::unique_ptr<Instance> out = std::move(*it);
  if (next) *it = std::move(next);
  else list_.erase(it);
  return out;
}

void InstanceSet::retire(std::unique_ptr<Instance> inst, uint64_t ms, std::function<void(bool)> then) {
  Instance* raw = inst.release();
  raw->stop(ms, [this, raw, then = std::move(then)](bool finished) {
    std::unique_ptr<Instance> up(raw);
    if (finished) {
      up->destroy();
      dispose_instance(std::move(up));
    } else {
      // Its late work may still call into it: keep the record and the code.
      pin(up->library());
      (void)up.release();
    }
    if (then) then(finished);
  });
}

const InstanceInfo* InstanceSet::info(const std::string& name) const {
  for (const auto& [n, i] : infos_)
    if (n == name) return &i;
  return nullptr;
}

void InstanceSet::set_info(const std::string& name, bool loaded, const std::string& result) {
  InstanceInfo* info = nullptr;
  for (auto& [n, i] : infos_)
    if (n == name) info = &i;
  if (!info) {
    infos_.push_back({name, InstanceInfo{0, "", 0}});
    info = &infos_.back().second;
  }
  if (loaded) info->loads++;
  info->last_result = result;
  info->last_time_ms = realtime_ms();
}

void InstanceSet::drop_info(const std::string& name) {
  std::erase_if(infos_, [&](const auto& p) { return p.first == name; });
}

}  // namespace hostlet
