// Small readers over a libxml2 tree, shared by the libvirt plugin's device
// cache (stats.cpp) and hostlet-hook's domain XML reader (hook/hook_xml.cpp).
// Documents are parsed with XML_PARSE_NONET and without XML_PARSE_NOENT:
// no network, entities left unexpanded (libxml2 also bounds amplification).
#pragma once

#include <libxml/parser.h>
#include <libxml/tree.h>

#include <cstring>
#include <memory>
#include <string>

namespace hostlet::xml {

struct DocFree {
  void operator()(xmlDoc* d) const { xmlFreeDoc(d); }
};
using Doc = std::unique_ptr<xmlDoc, DocFree>;

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
