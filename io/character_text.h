#pragma once
// A text file as character-level language-modelling data (as nanoGPT's shakespeare_char): every
// distinct byte of the file is a token (the vocabulary, sorted by byte value), the first
// (1 - val_fraction) of the text trains and the rest validates, and an example is a window of
// block_size tokens x with its next tokens y (x shifted by one).
//
// The default file is the songs and poems of Debian's `fortunes` package (234 KB of English
// verse). Bytes, not Unicode characters: a character of several UTF-8 bytes is several tokens.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "io/token_windows.h"
#include "trainer/data_module.h"

namespace lumen::io {

struct CharacterTextOptions {
  std::string path = "/usr/share/games/fortunes/songs-poems";
  int64_t block_size = 64;
  // Windows start every `stride` tokens (0: block_size, so they do not overlap).
  int64_t stride = 0;
  int64_t batch_size = 64;
  double val_fraction = 0.1;  // in [0, 1); 0: no validation split
  int num_workers = 2;
  bool shuffle = true;  // the training loader's order
  // The training loader's shuffle seed; unset: the default generator's seed when the loader is
  // made (what seed_everything sets).
  std::optional<uint64_t> shuffle_seed = std::nullopt;
};

class CharacterText : public DataModule {
 public:
  explicit CharacterText(CharacterTextOptions options = {});

  // Checks that the file exists; the error names it (and the package, for the default file).
  void prepare_data() override;
  // Reads the file and builds the vocabulary once; "fit" and "validate" need a split long
  // enough for one window (block_size + 1 tokens). No "test" or "predict" data.
  void setup(const std::string& stage) override;
  std::shared_ptr<DataLoader> train_dataloader() override;
  std::shared_ptr<DataLoader> val_dataloader() override;

  // After setup: the number of tokens, and text <-> tokens (i64 [n]). encode throws on a byte
  // outside the vocabulary, decode on a token out of range.
  int64_t vocab_size() const;
  Tensor encode(std::string_view text) const;
  std::string decode(const Tensor& tokens) const;

  const CharacterTextOptions& options() const { return options_; }
  // Null until setup.
  std::shared_ptr<const Dataset> train_dataset() const { return train_; }
  std::shared_ptr<const Dataset> val_dataset() const { return val_; }

 private:
  void check_setup(const char* what) const;
  std::shared_ptr<DataLoader> loader(const std::shared_ptr<const Dataset>& dataset,
                                     bool shuffle) const;

  CharacterTextOptions options_;
  std::vector<char> vocabulary_;  // token -> byte
  std::vector<int> token_of_;     // byte -> token, -1 when absent
  std::shared_ptr<const Dataset> train_, val_;
};

}  // namespace lumen::io
