// Scrapes of the agent's metrics (scrape.hpp).
#include "scrape.hpp"

#include <algorithm>
#include <vector>

#include "instance.hpp"
#include "log.hpp"
#include "metrics.hpp"

namespace hostlet {

Scraper::Scraper(Core& core) : core_(core) {}

Scraper::~Scraper() = default;

void Scraper::scrape(hostlet_metrics_format format, uint64_t timeout_ms, Done done) {
  scrapes_++;
  auto owned = std::make_unique<Pending>();
  Pending* p = owned.get();
  p->self = this;
  p->format = format;
  p->done = std::move(done);
  p->timer = make_uv<uv_timer_t>(core_.loop, p, uv_timer_init);
  pending_.push_back(std::move(owned));
  p->it = std::prev(pending_.end());
  for (const auto& [gen, inst] : core_.live) {
    if (inst->state() != Instance::State::Started || !inst->has_refresh()) continue;
    if (refreshing_.count(gen) || inst->call_refresh()) {
      refreshing_.insert(gen);
      p->waiting.insert(gen);
    }
  }
  if (!p->timer) {  // cannot happen short of memory exhaustion: answer with what there is
    p->waiting.clear();
    complete(p);
    return;
  }
  if (p->waiting.empty()) make_due(p);
  else uv_timer_start(p->timer.get(), &on_timer, timeout_ms, 0);
}

void Scraper::make_due(Pending* p) {
  p->due = true;
  uv_timer_start(p->timer.get(), &on_timer, 0, 0);
}

void Scraper::on_timer(uv_timer_t* t) {
  auto* p = static_cast<Pending*>(t->data);
  if (!p->due) p->self->timed_out_++;
  p->self->complete(p);
}

void Scraper::refreshed(Instance* inst) {
  uint64_t gen = inst->generation();
  if (!refreshing_.erase(gen)) return;  // a stray or repeated call: nothing waits on it
  for (auto& p : pending_)
    if (p->waiting.erase(gen) && p->waiting.empty() && !p->due) make_due(p.get());
}

void Scraper::forget(Instance* inst) { refreshed(inst); }

std::string Scraper::render(hostlet_metrics_format format) {
  hostlet_metrics w(format);
  if (core_metrics_) {
    w.set_owner("hostlet");
    core_metrics_(w);
    if (w.refusals()) log(Level::Warn, "hostlet", "metrics: %s", w.first_refusal().c_str());
  }
  std::vector<Instance*> started;  // in name order, so that expositions read the same each time
  for (const auto& [gen, inst] : core_.live)
    if (inst->state() == Instance::State::Started) started.push_back(inst);
  std::sort(started.begin(), started.end(), [](Instance* a, Instance* b) { return a->name() < b->name(); });
  for (Instance* inst : started) {
    w.set_owner(inst->name());
    inst->call_collect(&w);
    if (w.refusals()) inst->note_metrics_refused(w.refusals(), w.first_refusal());
  }
  return w.finish();
}

void Scraper::complete(Pending* p) {
  std::unique_ptr<Pending> owned = std::move(*p->it);
  pending_.erase(p->it);
  std::string text = render(p->format);
  Done done = std::move(owned->done);
  owned.reset();  // closes the timer
  done(std::move(text));
}

void Scraper::close() {
  while (!pending_.empty()) complete(pending_.front().get());
  refreshing_.clear();
}

}  // namespace hostlet
