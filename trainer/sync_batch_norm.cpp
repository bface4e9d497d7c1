#include "trainer/sync_batch_norm.h"

namespace lumen {

CommunicatorProcessGroup::CommunicatorProcessGroup(std::shared_ptr<dist::Communicator> comm)
    : comm_(std::move(comm)) {
  LUMEN_CHECK(comm_ != nullptr, "CommunicatorProcessGroup: the communicator is null");
}

std::shared_ptr<nn::ProcessGroup> convert_sync_batchnorm(nn::Module& module,
                                                         std::shared_ptr<dist::Communicator> comm) {
  auto group = std::make_shared<CommunicatorProcessGroup>(std::move(comm));
  bool any = false;
  for (const auto& [name, m] : module.named_modules()) {
    auto* bn = dynamic_cast<nn::BatchNorm*>(m);
    if (!bn || bn->process_group) continue;
    bn->process_group = group;
    any = true;
  }
  return any ? group : nullptr;
}

void revert_sync_batchnorm(nn::Module& module, const std::shared_ptr<nn::ProcessGroup>& group) {
  if (!group) return;
  for (const auto& [name, m] : module.named_modules())
    if (auto* bn = dynamic_cast<nn::BatchNorm*>(m); bn && bn->process_group == group)
      bn->process_group = nullptr;
}

bool has_synced_batch_norm(nn::Module& module) {
  for (const auto& [name, m] : module.named_modules())
    if (auto* bn = dynamic_cast<nn::BatchNorm*>(m))
      if (bn->process_group && bn->process_group->world_size() > 1) return true;
  return false;
}

}  // namespace lumen
