#include "io/character_text.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <utility>

#include "tensor/error.h"

namespace lumen::io {
namespace {

const char* const kDefaultPath = "/usr/share/games/fortunes/songs-poems";

// A byte as the error messages show it: itself when printable, else its code.
std::string shown(unsigned char c) {
  if (c >= 0x20 && c < 0x7f) return std::string("'") + static_cast<char>(c) + "'";
  return "byte " + std::to_string(static_cast<int>(c));
}

}  // namespace

CharacterText::CharacterText(CharacterTextOptions options) : options_(std::move(options)) {
  LUMEN_CHECK(options_.block_size >= 1, "CharacterText: block_size must be >= 1, got ",
              options_.block_size);
  LUMEN_CHECK(options_.stride >= 0, "CharacterText: stride must be >= 0 (0: block_size), got ",
              options_.stride);
  LUMEN_CHECK(options_.batch_size >= 1, "CharacterText: batch_size must be >= 1, got ",
              options_.batch_size);
  LUMEN_CHECK(options_.val_fraction >= 0 && options_.val_fraction < 1,
              "CharacterText: val_fraction must be in [0, 1), got ", options_.val_fraction);
  LUMEN_CHECK(options_.num_workers >= 0, "CharacterText: num_workers must be >= 0, got ",
              options_.num_workers);
  if (options_.stride == 0) options_.stride = options_.block_size;
}

void CharacterText::prepare_data() {
  std::error_code ec;
  LUMEN_CHECK(std::filesystem::is_regular_file(options_.path, ec), "CharacterText: no file '",
              options_.path, "'",
              options_.path == kDefaultPath
                  ? "; install the Debian package fortunes (apt-get install fortunes), or set "
                    "path to any text file"
                  : "; expected a text file");
}

void CharacterText::setup(const std::string& stage) {
  LUMEN_CHECK(stage == "fit" || stage == "validate" || stage == "test" || stage == "predict",
              "CharacterText::setup: unknown stage '", stage,
              "'; expected \"fit\", \"validate\", \"test\" or \"predict\"");
  if (train_) return;
  prepare_data();
  std::ifstream in(options_.path, std::ios::binary);
  LUMEN_CHECK(in.good(), "CharacterText: cannot open '", options_.path, "'");
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  LUMEN_CHECK(!in.bad(), "CharacterText: reading '", options_.path, "' failed");
  LUMEN_CHECK(!text.empty(), "CharacterText: '", options_.path, "' is empty");

  std::vector<bool> present(256, false);
  for (char c : text) present[static_cast<unsigned char>(c)] = true;
  token_of_.assign(256, -1);
  vocabulary_.clear();
  for (int b = 0; b < 256; ++b)
    if (present[static_cast<size_t>(b)]) {
      token_of_[static_cast<size_t>(b)] = static_cast<int>(vocabulary_.size());
      vocabulary_.push_back(static_cast<char>(b));
    }
  const Tensor tokens = encode(text);

  const int64_t n = tokens.size(0);
  const int64_t n_val = static_cast<int64_t>(std::floor(options_.val_fraction * double(n)));
  const int64_t n_train = n - n_val, need = options_.block_size + 1;
  LUMEN_CHECK(n_train >= need, "CharacterText: the training split of '", options_.path, "' has ",
              n_train, " tokens; a window of block_size ", options_.block_size, " needs ", need);
  LUMEN_CHECK(options_.val_fraction == 0 || n_val >= need,
              "CharacterText: the validation split of '", options_.path, "' (val_fraction ",
              options_.val_fraction, ") has ", n_val, " tokens; a window of block_size ",
              options_.block_size, " needs ", need,
              " (raise val_fraction, or set it to 0 for no validation)");
  train_ = std::make_shared<TokenWindows>(tokens.narrow(0, 0, n_train), options_.block_size,
                                          options_.stride);
  if (n_val > 0)
    val_ = std::make_shared<TokenWindows>(tokens.narrow(0, n_train, n_val), options_.block_size,
                                          options_.stride);
}

void CharacterText::check_setup(const char* what) const {
  LUMEN_CHECK(train_ != nullptr, "CharacterText::", what,
              ": no data yet; call setup(\"fit\") first");
}

int64_t CharacterText::vocab_size() const {
  check_setup("vocab_size");
  return static_cast<int64_t>(vocabulary_.size());
}

Tensor CharacterText::encode(std::string_view text) const {
  LUMEN_CHECK(!token_of_.empty(),
              "CharacterText::encode: no vocabulary yet; call setup(\"fit\") "
              "first");
  Tensor tokens = empty({static_cast<int64_t>(text.size())}, {.dtype = DType::i64});
  int64_t* t = tokens.data<int64_t>();
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    const int token = token_of_[c];
    LUMEN_CHECK(token >= 0, "CharacterText::encode: ", shown(c), " at position ", i,
                " is not in the vocabulary of '", options_.path, "' (", vocabulary_.size(),
                " bytes)");
    t[i] = token;
  }
  return tokens;
}

std::string CharacterText::decode(const Tensor& tokens) const {
  check_setup("decode");
  LUMEN_CHECK(tokens.dim() <= 1 && (tokens.dtype() == DType::i64 || tokens.dtype() == DType::i32),
              "CharacterText::decode: expected i64 or i32 tokens [n], got ",
              dtype_name(tokens.dtype()), " ", ShapeStr{tokens.shape()});
  const Tensor host = host_values(tokens.to(DType::i64).contiguous());
  const int64_t* t = host.data<int64_t>();
  std::string text(static_cast<size_t>(host.numel()), '\0');
  for (int64_t i = 0; i < host.numel(); ++i) {
    LUMEN_CHECK(t[i] >= 0 && t[i] < static_cast<int64_t>(vocabulary_.size()),
                "CharacterText::decode: token ", t[i], " at position ", i,
                " is out of range for a vocabulary of ", vocabulary_.size());
    text[static_cast<size_t>(i)] = vocabulary_[static_cast<size_t>(t[i])];
  }
  return text;
}

std::shared_ptr<DataLoader> CharacterText::loader(const std::shared_ptr<const Dataset>& dataset,
                                                  bool shuffle) const {
  DataLoaderOptions opts;
  opts.batch_size = options_.batch_size;
  opts.shuffle = shuffle;
  opts.num_workers = options_.num_workers;
  opts.seed = options_.shuffle_seed;
  return std::make_shared<DataLoader>(dataset, std::move(opts));
}

std::shared_ptr<DataLoader> CharacterText::train_dataloader() {
  check_setup("train_dataloader");
  return loader(train_, options_.shuffle);
}

std::shared_ptr<DataLoader> CharacterText::val_dataloader() {
  check_setup("val_dataloader");
  return val_ ? loader(val_, false) : nullptr;
}

}  // namespace lumen::io
