#include "trainer/on_exception_checkpoint.h"

#include <cstdio>
#include <filesystem>

#include "tensor/error.h"
#include "trainer/trainer.h"

namespace lumen {

OnExceptionCheckpoint::OnExceptionCheckpoint(std::string dirpath, std::string filename)
    : dirpath_(std::move(dirpath)), filename_(std::move(filename)) {
  LUMEN_CHECK(!dirpath_.empty(), "OnExceptionCheckpoint: dirpath is empty");
  LUMEN_CHECK(!filename_.empty() && filename_.find('/') == std::string::npos,
              "OnExceptionCheckpoint: filename must be a plain file name, got \"", filename_, "\"");
}

void OnExceptionCheckpoint::on_exception(Trainer& trainer, LightningModule&,
                                         const std::exception&) {
  try {
    if (trainer.is_global_zero()) std::filesystem::create_directories(dirpath_);
    trainer.save_checkpoint(ckpt_path());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lumen: OnExceptionCheckpoint could not save %s: %s\n",
                 ckpt_path().c_str(), e.what());
  }
}

void OnExceptionCheckpoint::teardown(Trainer& trainer, LightningModule&, const std::string&) {
  std::error_code ec;
  if (trainer.is_global_zero()) std::filesystem::remove(ckpt_path(), ec);
}

}  // namespace lumen
