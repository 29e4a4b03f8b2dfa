// etc/hostlet.yaml, embedded in the hostlet binary at build time (embed.py):
// the config used when no file is given.
#pragma once

namespace hostlet {
extern const char kDefaultConfig[];
}  // namespace hostlet
