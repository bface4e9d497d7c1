#pragma once
// hparams.yaml, the file Lightning's loggers write next to their metrics: one "key: value"
// line per hyper-parameter (lists as YAML block sequences), keys sorted.
#include <map>
#include <string>

#include "nn/state.h"

namespace lumen {

std::string hparams_to_yaml(const std::map<std::string, AttrValue>& params);

// Writes hparams_to_yaml(params) to `path` (through a temporary file renamed over it).
void write_hparams_yaml(const std::string& path, const std::map<std::string, AttrValue>& params);

}  // namespace lumen
