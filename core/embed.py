#!/usr/bin/env python3
"""Writes a C++ file defining hostlet::kDefaultConfig from a YAML file."""
import sys

src, dst = sys.argv[1], sys.argv[2]
with open(src, encoding="utf-8") as f:
    text = f.read()
with open(dst, "w", encoding="utf-8") as f:
    f.write("// generated from %s by core/embed.py\n" % src.rsplit("/", 1)[-1])
    f.write("namespace hostlet {\nextern const char kDefaultConfig[];\n")
    f.write("const char kDefaultConfig[] = R\"hostlet_yaml(%s)hostlet_yaml\";\n}\n" % text)
