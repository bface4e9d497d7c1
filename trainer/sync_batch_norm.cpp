#include "trainer/sync_batch_norm.h"

namespace lumen {

CommunicatorProcessGroup::CommunicatorProcessGroup(std::shared_ptr<dist::Communicator> comm)
    : comm_(std::move(comm)) {
  LUMEN_CHECK(comm_ != nullptr, "CommunicatorProcessGroup: the communicator is null");
}

std::vector<nn::BatchNorm*> convert_sync_batchnorm(nn::Module& module,
                                                   std::shared_ptr<dist::Communicator> comm) {
  auto group = std::make_shared<CommunicatorProcessGroup>(std::move(comm));
  std::vector<nn::BatchNorm*> converted;
  for (const auto& [name, m] : module.named_modules()) {
    auto* bn = dynamic_cast<nn::BatchNorm*>(m);
    if (!bn || bn->process_group) continue;
    bn->process_group = group;
    converted.push_back(bn);
  }
  return converted;
}

void revert_sync_batchnorm(const std::vector<nn::BatchNorm*>& converted) {
  for (nn::BatchNorm* bn : converted) bn->process_group = nullptr;
}

bool has_synced_batch_norm(nn::Module& module) {
  for (const auto& [name, m] : module.named_modules())
    if (auto* bn = dynamic_cast<nn::BatchNorm*>(m))
      if (bn->process_group && bn->process_group->world_size() > 1) return true;
  return false;
}

}  // namespace lumen
