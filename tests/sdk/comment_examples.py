#!/usr/bin/env python3
"""Compiles every example in the public headers' comments.

usage: comment_examples.py HEADER STD -- COMPILER ARGS...

An example is a comment block that starts with a line " * Example (KIND):"
(KIND: "a whole file", or "members of a Plugin"), then a line " *", then the
example's lines, each " *   " and the code, up to the first line that is not
indented that way. Each example becomes a source file of its own (a whole
file as it is; members inside a class derived from hostlet::Plugin), and is
compiled with COMPILER ARGS -std=STD -Wall -Wextra -Wpedantic -Werror. Fails
when a header has no example (a renamed marker must not silently test
nothing) or when one does not compile, printing the source and the errors.
"""
import os
import re
import subprocess
import sys
import tempfile

WRAP = {
    "a whole file": "{code}",
    "members of a Plugin": (
        "#include <hostlet/plugin.hpp>\n#include <cstdint>\n#include <string>\n#include <vector>\n"
        "struct Example final : hostlet::Plugin {{\n  using Plugin::Plugin;\n{code}\n}};\n"
        "const hostlet_config_key kConfig[] = {{{{nullptr, HOSTLET_CONFIG_STRING, nullptr, nullptr, 0, 0, 0}}}};\n"
        'HOSTLET_CPP_PLUGIN(Example, "example", "1", "example", kConfig, nullptr, nullptr)\n'),
}


def examples(text):
    lines = text.split("\n")
    for i, line in enumerate(lines):
        m = re.match(r"^ \* Example \(([^)]*)\)", line)
        if not m:
            continue
        kind = m.group(1)
        j = i + 1
        while j < len(lines) and not lines[j].startswith(" *   "):  # the rest of the marker sentence, " *"
            j += 1
        code = []
        while j < len(lines) and (lines[j].startswith(" *   ") or lines[j] == " *"):
            code.append(lines[j][5:] if lines[j].startswith(" *   ") else "")
            j += 1
        yield i + 1, kind, "\n".join(code).rstrip() + "\n"


def main():
    header, std = sys.argv[1], sys.argv[2]
    compiler = sys.argv[sys.argv.index("--") + 1:]
    found = list(examples(open(header, encoding="utf-8").read()))
    if not found:
        print(f"{header}: no 'Example (...)' block found")
        return 1
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for line, kind, code in found:
            if kind not in WRAP:
                print(f"{header}:{line}: unknown example kind '{kind}' (known: {', '.join(WRAP)})")
                failed += 1
                continue
            src = os.path.join(tmp, f"example_{line}.cpp")
            with open(src, "w", encoding="utf-8") as f:
                f.write(WRAP[kind].format(code=code))
            cmd = compiler + [f"-std={std}", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-fPIC", "-c", src,
                              "-o", os.path.join(tmp, f"example_{line}.o")]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                print(f"{header}:{line}: the example ({kind}) does not compile:\n--- source\n"
                      + open(src, encoding="utf-8").read() + "--- " + " ".join(cmd) + "\n" + r.stdout + r.stderr)
                failed += 1
            else:
                print(f"{header}:{line}: ok ({kind})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
