#include "ops.hpp"

#include "words.hpp"

#include <hostlet/json_text.hpp>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <utility>

namespace hostlet_virt {
namespace {

using json = nlohmann::json;

// domain.list frees libvirt's records after answering only above this many
// domains (see op_list).
constexpr size_t kFreeLaterAbove = 16;

struct Word {
  const char* word;
  unsigned flag;
};

// Parses a comma-separated list of words into the union of their flags.
std::string parse_words(std::string_view text, std::span<const Word> table, const char* what,
                        unsigned* out) {
  unsigned flags = 0;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    if (comma == std::string_view::npos) comma = text.size();
    std::string_view w = text.substr(pos, comma - pos);
    while (!w.empty() && std::isspace(static_cast<unsigned char>(w.front()))) w.remove_prefix(1);
    while (!w.empty() && std::isspace(static_cast<unsigned char>(w.back()))) w.remove_suffix(1);
    if (!w.empty()) {
      auto it = std::find_if(table.begin(), table.end(), [&](const Word& x) { return w == x.word; });
      if (it == table.end()) {
        std::string known;
        for (const Word& x : table) known += std::string(known.empty() ? "" : ", ") + x.word;
        return "unknown " + std::string(what) + " '" + std::string(w) + "' (one or more of: " + known + ")";
      }
      flags |= it->flag;
    }
    pos = comma + 1;
  }
  *out = flags;
  return {};
}

constexpr Word kStateFilters[] = {
    {"all", 0},
    {"active", VIR_CONNECT_LIST_DOMAINS_ACTIVE},
    {"inactive", VIR_CONNECT_LIST_DOMAINS_INACTIVE},
    {"persistent", VIR_CONNECT_LIST_DOMAINS_PERSISTENT},
    {"transient", VIR_CONNECT_LIST_DOMAINS_TRANSIENT},
    {"running", VIR_CONNECT_LIST_DOMAINS_RUNNING},
    {"paused", VIR_CONNECT_LIST_DOMAINS_PAUSED},
    {"shutoff", VIR_CONNECT_LIST_DOMAINS_SHUTOFF},
    {"other", VIR_CONNECT_LIST_DOMAINS_OTHER},
};

constexpr Word kStatsGroups[] = {
    {"all", 0},
    {"state", VIR_DOMAIN_STATS_STATE},
    {"cpu-total", VIR_DOMAIN_STATS_CPU_TOTAL},
    {"balloon", VIR_DOMAIN_STATS_BALLOON},
    {"vcpu", VIR_DOMAIN_STATS_VCPU},
    {"interface", VIR_DOMAIN_STATS_INTERFACE},
    {"block", VIR_DOMAIN_STATS_BLOCK},
    {"perf", VIR_DOMAIN_STATS_PERF},
    {"iothread", VIR_DOMAIN_STATS_IOTHREAD},
    {"memory", VIR_DOMAIN_STATS_MEMORY},
    {"dirtyrate", VIR_DOMAIN_STATS_DIRTYRATE},
    {"vm", VIR_DOMAIN_STATS_VM},
};

// Shutdown and reboot modes share their bit values.
static_assert(static_cast<int>(VIR_DOMAIN_SHUTDOWN_PARAVIRT) == static_cast<int>(VIR_DOMAIN_REBOOT_PARAVIRT));
constexpr Word kPowerModes[] = {
    {"default", 0},
    {"acpi", VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN},
    {"agent", VIR_DOMAIN_SHUTDOWN_GUEST_AGENT},
    {"initctl", VIR_DOMAIN_SHUTDOWN_INITCTL},
    {"signal", VIR_DOMAIN_SHUTDOWN_SIGNAL},
    {"paravirt", VIR_DOMAIN_SHUTDOWN_PARAVIRT},
};

constexpr Word kUndefineFlags[] = {
    {"managed-save", VIR_DOMAIN_UNDEFINE_MANAGED_SAVE},
    {"snapshots-metadata", VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA},
    {"checkpoints-metadata", VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA},
    {"nvram", VIR_DOMAIN_UNDEFINE_NVRAM},
    {"keep-nvram", VIR_DOMAIN_UNDEFINE_KEEP_NVRAM},
    {"tpm", VIR_DOMAIN_UNDEFINE_TPM},
    {"keep-tpm", VIR_DOMAIN_UNDEFINE_KEEP_TPM},
};

const char* get(const Args& a, std::string_view key) {
  auto it = a.find(key);
  return it == a.end() ? nullptr : it->second.c_str();
}

unsigned flags_of(const Args& a, std::string_view key, std::span<const Word> table) {
  unsigned f = 0;
  if (const char* v = get(a, key)) parse_words(v, table, "", &f);  // validated on the loop
  return f;
}

bool bool_of(const Args& a, std::string_view key) {
  bool b = false;
  if (const char* v = get(a, key)) parse_bool(v, &b);
  return b;
}

bool valid_uuid(std::string_view s) {
  size_t hex = 0;
  for (char c : s) {
    if (std::isxdigit(static_cast<unsigned char>(c))) hex++;
    else if (c != '-') return false;
  }
  return hex == 32;
}

// ---- validation (loop thread) ----

std::string check_bool(const Args& a, const char* key) {
  bool b;
  if (const char* v = get(a, key); v && !parse_bool(v, &b))
    return std::string("attribute '") + key + "' must be true or false, not '" + v + "'";
  return {};
}

std::string check_words(const Args& a, const char* key, std::span<const Word> table, const char* what) {
  unsigned f;
  if (const char* v = get(a, key)) return parse_words(v, table, what, &f);
  return {};
}

std::string check_domain(const Args& a) {
  const char* name = get(a, "name");
  const char* uuid = get(a, "uuid");
  if (!name && !uuid) return "missing attribute 'name' or 'uuid'";
  if (uuid && !valid_uuid(uuid)) return std::string("invalid uuid '") + uuid + "'";
  if (!uuid && !*name) return "attribute 'name' is empty";
  return {};
}

std::string v_none(const Args&) { return {}; }
std::string v_domain(const Args& a) { return check_domain(a); }
std::string v_list(const Args& a) { return check_words(a, "state", kStateFilters, "state filter"); }
std::string v_start(const Args& a) {
  if (auto e = check_domain(a); !e.empty()) return e;
  return check_bool(a, "paused");
}
std::string v_power(const Args& a) {
  if (auto e = check_domain(a); !e.empty()) return e;
  return check_words(a, "mode", kPowerModes, "mode");
}
std::string v_destroy(const Args& a) {
  if (auto e = check_domain(a); !e.empty()) return e;
  return check_bool(a, "graceful");
}
std::string v_define(const Args& a) {
  const char* xml = get(a, "xml");
  if (!xml) return "missing attribute 'xml'";
  if (!*xml) return "attribute 'xml' is empty";
  return check_bool(a, "validate");
}
std::string v_undefine(const Args& a) {
  if (auto e = check_domain(a); !e.empty()) return e;
  return check_words(a, "flags", kUndefineFlags, "undefine flag");
}
std::string v_stats(const Args& a) {
  if (get(a, "name") || get(a, "uuid")) {
    if (auto e = check_domain(a); !e.empty()) return e;
    if (get(a, "state")) return "attribute 'state' filters all domains; it cannot be combined with 'name' or 'uuid'";
  }
  if (auto e = check_words(a, "stats", kStatsGroups, "stats group"); !e.empty()) return e;
  if (auto e = check_words(a, "state", kStateFilters, "state filter"); !e.empty()) return e;
  return check_bool(a, "nowait");
}

// ---- helpers (pool thread) ----

std::string uuid_of(virDomainPtr d) {
  char buf[VIR_UUID_STRING_BUFLEN] = {};
  if (virDomainGetUUIDString(d, buf) < 0) return {};
  return buf;
}

std::string name_of(virDomainPtr d) {
  const char* n = virDomainGetName(d);
  return n ? n : "";
}

hostlet::Attrs identity(virDomainPtr d) { return {{"name", name_of(d)}, {"uuid", uuid_of(d)}}; }

// Looks the domain up by uuid (preferred) or name; nullptr with *fail set when absent.
DomainPtr lookup(virConnectPtr c, const Args& a, Outcome* fail) {
  const char* uuid = get(a, "uuid");
  const char* name = get(a, "name");
  DomainPtr d(uuid ? virDomainLookupByUUIDString(c, uuid) : virDomainLookupByName(c, name));
  if (!d) *fail = libvirt_failure(uuid ? std::string("domain uuid ") + uuid : std::string("domain '") + name + "'");
  return d;
}

std::string version_text(unsigned long v) {
  return std::to_string(v / 1000000) + "." + std::to_string((v / 1000) % 1000) + "." + std::to_string(v % 1000);
}

json typed_value(const virTypedParameter& p) {
  switch (p.type) {
    case VIR_TYPED_PARAM_INT: return p.value.i;
    case VIR_TYPED_PARAM_UINT: return p.value.ui;
    case VIR_TYPED_PARAM_LLONG: return p.value.l;
    case VIR_TYPED_PARAM_ULLONG: return p.value.ul;
    case VIR_TYPED_PARAM_DOUBLE: return p.value.d;
    case VIR_TYPED_PARAM_BOOLEAN: return p.value.b != 0;
    case VIR_TYPED_PARAM_STRING: return p.value.s ? std::string(p.value.s) : std::string();
    default: return nullptr;
  }
}

struct StatsFree {
  void operator()(virDomainStatsRecordPtr* r) const { virDomainStatsRecordListFree(r); }
};

// ---- actions (pool thread) ----

// A domain action that answers with the domain's identity.
template <int (*Fn)(virDomainPtr, const Args&)>
Outcome domain_op(virConnectPtr c, const Args& a) {
  Outcome fail;
  DomainPtr d = lookup(c, a, &fail);
  if (!d) return fail;
  if (Fn(d.get(), a) < 0) return libvirt_failure("");
  Outcome o;
  o.attrs = identity(d.get());
  return o;
}

int do_shutdown(virDomainPtr d, const Args& a) { return virDomainShutdownFlags(d, flags_of(a, "mode", kPowerModes)); }
int do_reboot(virDomainPtr d, const Args& a) { return virDomainReboot(d, flags_of(a, "mode", kPowerModes)); }
int do_destroy(virDomainPtr d, const Args& a) {
  return virDomainDestroyFlags(d, bool_of(a, "graceful") ? unsigned{VIR_DOMAIN_DESTROY_GRACEFUL} : 0u);
}
int do_suspend(virDomainPtr d, const Args&) { return virDomainSuspend(d); }
int do_resume(virDomainPtr d, const Args&) { return virDomainResume(d); }
int do_undefine(virDomainPtr d, const Args& a) {
  unsigned f = flags_of(a, "flags", kUndefineFlags);
  return f ? virDomainUndefineFlags(d, f) : virDomainUndefine(d);
}

Outcome op_start(virConnectPtr c, const Args& a) {
  Outcome fail;
  DomainPtr d = lookup(c, a, &fail);
  if (!d) return fail;
  if (virDomainCreateWithFlags(d.get(), bool_of(a, "paused") ? unsigned{VIR_DOMAIN_START_PAUSED} : 0u) < 0)
    return libvirt_failure("");
  Outcome o;
  o.attrs = identity(d.get());
  unsigned id = virDomainGetID(d.get());
  if (id != static_cast<unsigned>(-1)) o.attrs.emplace_back("id", std::to_string(id));
  return o;
}

Outcome op_define(virConnectPtr c, const Args& a) {
  DomainPtr d(virDomainDefineXMLFlags(c, get(a, "xml"), bool_of(a, "validate") ? unsigned{VIR_DOMAIN_DEFINE_VALIDATE} : 0u));
  if (!d) return libvirt_failure("");
  Outcome o;
  o.attrs = identity(d.get());
  return o;
}

Outcome op_info(virConnectPtr c, const Args& a) {
  Outcome fail;
  DomainPtr d = lookup(c, a, &fail);
  if (!d) return fail;
  virDomainInfo info{};
  int state = 0, reason = 0;
  if (virDomainGetInfo(d.get(), &info) < 0) return libvirt_failure("");
  if (virDomainGetState(d.get(), &state, &reason, 0) < 0) return libvirt_failure("");
  int persistent = virDomainIsPersistent(d.get());
  int autostart = 0;
  bool have_autostart = virDomainGetAutostart(d.get(), &autostart) == 0;
  virResetLastError();

  Outcome o;
  o.attrs = identity(d.get());
  unsigned id = virDomainGetID(d.get());
  if (id != static_cast<unsigned>(-1)) o.attrs.emplace_back("id", std::to_string(id));
  o.attrs.emplace_back("state", state_word(state));
  o.attrs.emplace_back("reason", state_reason_word(state, reason));
  o.attrs.emplace_back("max_memory_kib", std::to_string(info.maxMem));
  o.attrs.emplace_back("memory_kib", std::to_string(info.memory));
  o.attrs.emplace_back("vcpus", std::to_string(info.nrVirtCpu));
  o.attrs.emplace_back("cpu_time_ns", std::to_string(info.cpuTime));
  if (persistent >= 0) o.attrs.emplace_back("persistent", persistent ? "true" : "false");
  if (have_autostart) o.attrs.emplace_back("autostart", autostart ? "true" : "false");
  return o;
}

// One domain of domain.list. Every public virDomain* call formats the
// domain's UUID for libvirt's debug log (about a microsecond each), so an
// entry asks only for what it needs: the raw UUID (formatted here), and the id
// only of a domain that may be running (a shut-off one has none). The name
// points into libvirt's domain object, which outlives the entry (op_list).
struct ListEntry {
  std::string_view name;
  char uuid[VIR_UUID_STRING_BUFLEN] = {};
  int state = 0, reason = 0;
  unsigned id = static_cast<unsigned>(-1);
};

ListEntry list_entry(virDomainPtr d, int state, int reason) {
  ListEntry e;
  if (const char* n = virDomainGetName(d)) e.name = n;
  unsigned char raw[VIR_UUID_BUFLEN];
  if (virDomainGetUUID(d, raw) == 0) {
    static const char kHex[] = "0123456789abcdef";
    char* p = e.uuid;
    for (int i = 0; i < VIR_UUID_BUFLEN; i++) {
      if (i == 4 || i == 6 || i == 8 || i == 10) *p++ = '-';
      *p++ = kHex[raw[i] >> 4];
      *p++ = kHex[raw[i] & 15];
    }
    *p = '\0';
  }
  e.state = state;
  e.reason = reason;
  if (state != VIR_DOMAIN_SHUTOFF) e.id = virDomainGetID(d);
  return e;
}

// The entries, sorted by name, as the JSON array domain.list answers (keys in
// the order nlohmann::json writes them), written directly: 1000 domains as a
// DOM cost more than the libvirt calls, and so did a DOM per string (3000
// nlohmann serializers per list). libvirt's order is a hash's, so the sort
// runs on every call: it compares the names' first 8 bytes as one integer
// (big-endian, so in the same order) and whole names only on a tie. The text
// after the name is the same for every domain in the same state and reason:
// written once per pair. 1000 domains in a shuffled order: 94 -> 61 us.
std::string list_json(const std::vector<ListEntry>& entries) {
  struct Key {
    uint64_t prefix;
    const ListEntry* e;
  };
  std::vector<Key> order;
  order.reserve(entries.size());
  for (const ListEntry& e : entries) {
    uint64_t k = 0;
    for (size_t i = 0; i < 8 && i < e.name.size(); i++) k |= uint64_t{static_cast<unsigned char>(e.name[i])} << (56 - 8 * i);
    order.push_back({k, &e});
  }
  auto by_name = [](const Key& x, const Key& y) { return x.prefix != y.prefix ? x.prefix < y.prefix : x.e->name < y.e->name; };
  if (!std::is_sorted(order.begin(), order.end(), by_name)) std::sort(order.begin(), order.end(), by_name);

  struct Tail {
    int state, reason;
    std::string text;  // ,"reason":"...","state":"...","uuid":"
  };
  std::vector<Tail> tails;
  auto tail = [&tails](int state, int reason) -> const std::string& {
    for (const Tail& t : tails)
      if (t.state == state && t.reason == reason) return t.text;
    std::string text = ",\"reason\":";
    hostlet::append_json_string(text, state_reason_word(state, reason));
    text += ",\"state\":";
    hostlet::append_json_string(text, state_word(state));
    text += ",\"uuid\":\"";
    return tails.emplace_back(Tail{state, reason, std::move(text)}).text;
  };

  std::string out = "[";
  out.reserve(entries.size() * 120 + 2);
  for (const Key& k : order) {
    const ListEntry* e = k.e;
    if (out.size() > 1) out.push_back(',');
    out += "{\"id\":";
    if (e->id == static_cast<unsigned>(-1)) {
      out += "null";
    } else {
      char num[16];
      out.append(num, std::to_chars(num, num + sizeof num, e->id).ptr);
    }
    out += ",\"name\":";
    hostlet::append_json_string(out, e->name);
    out += tail(e->state, e->reason);
    out += e->uuid;
    out += "\"}";
  }
  out.push_back(']');
  return out;
}

// One round trip: the "state" stats group carries state and reason for every domain.
Outcome op_list(virConnectPtr c, const Args& a) {
  unsigned filter = flags_of(a, "state", kStateFilters);
  std::unique_ptr<virDomainStatsRecordPtr, StatsFree> recs;
  std::vector<DomainPtr> owned;
  std::vector<ListEntry> list;  // its names point into the domains of recs or owned
  virDomainStatsRecordPtr* raw = nullptr;
  int n = virConnectGetAllDomainStats(c, VIR_DOMAIN_STATS_STATE, &raw, filter);
  if (n >= 0) {
    recs.reset(raw);
    list.reserve(static_cast<size_t>(n));
    for (int i = 0; i < n; i++) {
      int state = 0, reason = 0;
      virTypedParamsGetInt(raw[i]->params, raw[i]->nparams, "state.state", &state);
      virTypedParamsGetInt(raw[i]->params, raw[i]->nparams, "state.reason", &reason);
      list.push_back(list_entry(raw[i]->dom, state, reason));
    }
  } else {
    virErrorPtr e = virGetLastError();
    if (!e || e->code != VIR_ERR_NO_SUPPORT) return libvirt_failure("");
    // A driver without bulk stats: list, then ask each domain.
    virDomainPtr* doms = nullptr;
    n = virConnectListAllDomains(c, &doms, filter);
    if (n < 0) return libvirt_failure("");
    owned.reserve(static_cast<size_t>(n));
    for (int i = 0; i < n; i++) owned.emplace_back(doms[i]);
    std::free(doms);
    for (auto& d : owned) {
      int state = 0, reason = 0;
      if (virDomainGetState(d.get(), &state, &reason, 0) < 0) continue;  // gone meanwhile
      list.push_back(list_entry(d.get(), state, reason));
    }
    virResetLastError();
  }
  Outcome o;
  o.attrs = {{"count", std::to_string(list.size())}};
  o.data_json = list_json(list);
  struct Domains {
    std::unique_ptr<virDomainStatsRecordPtr, StatsFree> recs;
    std::vector<DomainPtr> owned;
  };
  // Freeing libvirt's records of many domains takes long enough (1000: about
  // half of the call) to be worth doing after the answer, overlapped with the
  // next call; for a few it costs about 2 us, less than the extra pool
  // wake-up and loop wake-up that deferring it costs (see bench/RESULTS.md,
  // "one small call, hop by hop"): those are freed here, on this thread.
  if (static_cast<size_t>(std::max(n, 0)) > kFreeLaterAbove)
    o.release_after_reply = std::make_shared<Domains>(Domains{std::move(recs), std::move(owned)});
  return o;
}

Outcome op_stats(virConnectPtr c, const Args& a) {
  unsigned groups = flags_of(a, "stats", kStatsGroups);
  unsigned flags = bool_of(a, "nowait") ? unsigned{VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT} : 0u;
  DomainPtr d;
  if (get(a, "name") || get(a, "uuid")) {
    Outcome fail;
    d = lookup(c, a, &fail);
    if (!d) return fail;
  } else {
    flags |= flags_of(a, "state", kStateFilters);
  }
  StatsResult r = collect_stats(c, groups, flags, d.get());
  if (!r.ok) return r.failure;
  json list = json::array();
  for (auto& s : r.domains)
    list.push_back(json{{"name", s.name}, {"uuid", s.uuid}, {"stats", std::move(s.params)}});
  Outcome o;
  o.attrs = {{"count", std::to_string(list.size())}};
  o.data_json = list.dump();
  return o;
}

Outcome op_node_info(virConnectPtr c, const Args&) {
  virNodeInfo ni{};
  if (virNodeGetInfo(c, &ni) < 0) return libvirt_failure("");
  Outcome o;
  o.attrs = {{"model", ni.model},
             {"memory_kib", std::to_string(ni.memory)},
             {"cpus", std::to_string(ni.cpus)},
             {"mhz", std::to_string(ni.mhz)},
             {"numa_nodes", std::to_string(ni.nodes)},
             {"sockets", std::to_string(ni.sockets)},
             {"cores", std::to_string(ni.cores)},
             {"threads", std::to_string(ni.threads)}};
  if (char* h = virConnectGetHostname(c)) {
    o.attrs.emplace_back("hostname", h);
    std::free(h);
  }
  if (char* u = virConnectGetURI(c)) {
    o.attrs.emplace_back("uri", u);
    std::free(u);
  }
  if (const char* t = virConnectGetType(c)) o.attrs.emplace_back("hypervisor", t);
  unsigned long v = 0;
  if (virConnectGetVersion(c, &v) == 0) o.attrs.emplace_back("hypervisor_version", version_text(v));
  if (virConnectGetLibVersion(c, &v) == 0) o.attrs.emplace_back("libvirt_version", version_text(v));
  virResetLastError();
  return o;
}

constexpr Op kOps[] = {
    {"domain.list", "[state=all|active|inactive|running|paused|shutoff|other|persistent|transient,...]",
     "Lists domains; data: [{name, uuid, state, reason, id}] (id null when inactive)",
     {"state"}, v_list, op_list},
    {"domain.info", "name|uuid", "A domain's state, reason, memory, vcpus, cpu time, persistence",
     {"name", "uuid"}, v_domain, op_info},
    {"domain.start", "name|uuid [paused=true]", "Starts a defined domain (virDomainCreateWithFlags)",
     {"name", "uuid", "paused"}, v_start, op_start},
    {"domain.shutdown", "name|uuid [mode=acpi|agent|initctl|signal|paravirt]",
     "Asks the guest to shut down (virDomainShutdownFlags)", {"name", "uuid", "mode"}, v_power,
     domain_op<do_shutdown>},
    {"domain.destroy", "name|uuid [graceful=true]", "Powers the domain off (virDomainDestroyFlags)",
     {"name", "uuid", "graceful"}, v_destroy, domain_op<do_destroy>},
    {"domain.reboot", "name|uuid [mode=...]", "Reboots the domain (virDomainReboot)",
     {"name", "uuid", "mode"}, v_power, domain_op<do_reboot>},
    {"domain.suspend", "name|uuid", "Pauses the domain's vCPUs (virDomainSuspend)", {"name", "uuid"},
     v_domain, domain_op<do_suspend>},
    {"domain.resume", "name|uuid", "Resumes a paused domain (virDomainResume)", {"name", "uuid"},
     v_domain, domain_op<do_resume>},
    {"domain.define", "xml [validate=true]", "Defines (or updates) a domain from its XML",
     {"xml", "validate"}, v_define, op_define},
    {"domain.undefine", "name|uuid [flags=managed-save,snapshots-metadata,nvram,...]",
     "Removes a domain's definition", {"name", "uuid", "flags"}, v_undefine, domain_op<do_undefine>},
    {"domain.stats", "[name|uuid] [stats=state,cpu-total,...] [state=...] [nowait=true]",
     "virConnectGetAllDomainStats; data: [{name, uuid, stats: {key: value}}]",
     {"name", "uuid", "stats", "state", "nowait"}, v_stats, op_stats},
    {"node.info", "", "The host: model, memory, cpus, topology, hostname, hypervisor and versions", {},
     v_none, op_node_info},
};

}  // namespace

Outcome libvirt_failure(std::string_view what) {
  virErrorPtr e = virGetLastError();
  std::string msg(what);
  if (!msg.empty()) msg += ": ";
  int code = e ? e->code : 0;
  msg += e && e->message ? e->message : "unknown libvirt error";
  msg += " (libvirt error " + std::to_string(code) + ")";
  virResetLastError();
  return Outcome::failure(std::move(msg), code);
}

bool parse_bool(std::string_view t, bool* out) {
  if (t == "true" || t == "yes" || t == "on" || t == "1") {
    *out = true;
    return true;
  }
  if (t == "false" || t == "no" || t == "off" || t == "0") {
    *out = false;
    return true;
  }
  return false;
}

std::string parse_state_filter(std::string_view text, unsigned* flags) {
  return parse_words(text, kStateFilters, "state filter", flags);
}

std::string parse_stats_groups(std::string_view text, unsigned* groups) {
  return parse_words(text, kStatsGroups, "stats group", groups);
}

StatsResult collect_stats(virConnectPtr conn, unsigned groups, unsigned flags, virDomainPtr only) {
  StatsResult r;
  virDomainStatsRecordPtr* raw = nullptr;
  int n;
  if (only) {
    virDomainPtr doms[2] = {only, nullptr};
    n = virDomainListGetStats(doms, groups, &raw, flags);
  } else {
    n = virConnectGetAllDomainStats(conn, groups, &raw, flags);
  }
  if (n < 0) {
    r.ok = false;
    r.failure = libvirt_failure("");
    return r;
  }
  std::unique_ptr<virDomainStatsRecordPtr, StatsFree> recs(raw);
  r.domains.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; i++) {
    DomainStats s;
    s.name = name_of(raw[i]->dom);
    s.uuid = uuid_of(raw[i]->dom);
    for (int k = 0; k < raw[i]->nparams; k++) s.params[raw[i]->params[k].field] = typed_value(raw[i]->params[k]);
    r.domains.push_back(std::move(s));
  }
  return r;
}

std::string param_text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return "";
  return v.dump();
}

std::span<const Op> ops() { return kOps; }

}  // namespace hostlet_virt
