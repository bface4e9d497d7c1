#pragma once
// Lightning's `accelerator=` flag, shared by Trainer and Fabric: "cpu", "cuda" (or "gpu"), or
// "auto", which takes a GPU when one is present.
#include <string>

namespace lumen {

// Throws unless `accelerator` is one of the names above; `who` starts the message.
void check_accelerator(const std::string& accelerator, const std::string& who);
// Whether the flag runs on a GPU; throws when it asks for one and none is present.
bool accelerator_uses_cuda(const std::string& accelerator, const std::string& who);

}  // namespace lumen
