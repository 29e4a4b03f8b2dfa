// Small readers over a libxml2 tree, shared by the libvirt plugin's device
// cache (stats.cpp) and hostlet-hook's domain XML reader (hook/hook_xml.cpp).
// Documents are read by read() below: no network, no DTD.
#pragma once

#include <libxml/parser.h>
#include <libxml/tree.h>

#include <climits>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

namespace hostlet::xml {

struct DocFree {
  void operator()(xmlDoc* d) const { xmlFreeDoc(d); }
};
using Doc = std::unique_ptr<xmlDoc, DocFree>;

// Parses `text` (named `url` in messages) as libvirt writes it: with
// XML_PARSE_NONET, and refusing any document type declaration. libvirtd never
// writes a DOCTYPE; one in a domain's XML can only come from a hostile
// definition, and its internal entities would let a short input expand into
// long values (xmlGetProp expands entity references). On failure returns
// nullptr and, when `err` is given, says why.
inline Doc read(std::string_view text, const char* url, std::string* err = nullptr) {
  if (text.size() > static_cast<size_t>(INT_MAX)) {
    if (err) *err = "too large";
    return nullptr;
  }
  Doc doc(xmlReadMemory(text.data(), static_cast<int>(text.size()), url, nullptr,
                        XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING));
  if (!doc) {
    if (err) {
      const xmlError* e = xmlGetLastError();
      std::string why = e && e->message ? std::string(e->message) : std::string("not well-formed");
      while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
      *err = why + (e ? " (line " + std::to_string(e->line) + ")" : "");
    }
    return nullptr;
  }
  if (doc->intSubset || doc->extSubset) {
    if (err) *err = "a document type declaration (<!DOCTYPE>) is not accepted";
    return nullptr;
  }
  return doc;
}

// The attribute's value, or "" when absent.
inline std::string attr(xmlNode* n, const char* name) {
  xmlChar* v = xmlGetProp(n, reinterpret_cast<const xmlChar*>(name));
  if (!v) return {};
  std::string s(reinterpret_cast<char*>(v));
  xmlFree(v);
  return s;
}

// The element's text content (entities left as written), or "".
inline std::string text(xmlNode* n) {
  xmlChar* v = xmlNodeGetContent(n);
  if (!v) return {};
  std::string s(reinterpret_cast<char*>(v));
  xmlFree(v);
  return s;
}

inline bool named(xmlNode* n, const char* name) {
  return n->type == XML_ELEMENT_NODE && std::strcmp(reinterpret_cast<const char*>(n->name), name) == 0;
}

// The first child element called `name`, or nullptr.
inline xmlNode* child(xmlNode* n, const char* name) {
  for (xmlNode* c = n->children; c; c = c->next)
    if (named(c, name)) return c;
  return nullptr;
}

inline std::string child_attr(xmlNode* n, const char* element, const char* name) {
  xmlNode* c = child(n, element);
  return c ? attr(c, name) : std::string();
}

}  // namespace hostlet::xml
