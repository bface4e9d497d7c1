#include "trainer/accelerator.h"

#include "tensor/error.h"
#include "tensor/storage.h"

namespace lumen {

void check_accelerator(const std::string& accelerator, const std::string& who) {
  LUMEN_CHECK(accelerator == "auto" || accelerator == "cpu" || accelerator == "cuda" ||
                  accelerator == "gpu",
              who, ": accelerator must be \"auto\", \"cpu\", \"cuda\" or \"gpu\", got \"",
              accelerator, "\"");
}

bool accelerator_uses_cuda(const std::string& accelerator, const std::string& who) {
  check_accelerator(accelerator, who);
  bool want = accelerator == "cuda" || accelerator == "gpu" ||
              (accelerator == "auto" && cuda_is_available());
  LUMEN_CHECK(!want || cuda_is_available(), who, ": accelerator \"", accelerator,
              "\" asks for a GPU but no CUDA device is available");
  return want;
}

}  // namespace lumen
