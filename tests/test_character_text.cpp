// io::CharacterText (a text file as character-level language-modelling data), token files, and
// the character-level GPT of examples/char_gpt.h that trains on them.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>

#include "examples/char_gpt.h"
#include "io/token_file.h"
#include "op_harness.h"
#include "trainer_fixtures.h"

namespace lumen {
namespace {

using testing::TempDir;

TEST(CharacterText, VocabularyIsTheSortedDistinctBytes) {
  TempDir dir("chartext");
  io::CharacterText data(
      {.path = dir.write("t.txt", "hello world\n"), .block_size = 2, .val_fraction = 0});
  data.setup("fit");
  // '\n' ' ' d e h l o r w
  EXPECT_EQ(data.vocab_size(), 9);
  EXPECT_EQ(data.encode("hold\n w").to_vector<int64_t>(),
            (std::vector<int64_t>{4, 6, 5, 2, 0, 1, 8}));
  EXPECT_EQ(data.decode(data.encode("world hello\n")), "world hello\n");
  EXPECT_EQ(data.decode(from_vector<int32_t>({8, 6, 7})), "wor");
  // setup is done once: later stages keep the same data.
  const auto train = data.train_dataset();
  data.setup("validate");
  data.setup("fit");
  EXPECT_EQ(data.train_dataset(), train);
}

// Bytes, not characters: the two bytes of UTF-8's "é" (0xC3 0xA9) are two tokens, ordered
// after ASCII as unsigned bytes.
TEST(CharacterText, BytesAboveAsciiAreTokensInUnsignedOrder) {
  TempDir dir("chartext");
  io::CharacterText data(
      {.path = dir.write("t.txt", "caf\xc3\xa9 a\x01"), .block_size = 2, .val_fraction = 0});
  data.setup("fit");
  // \x01 ' ' a c f \xa9 \xc3
  EXPECT_EQ(data.vocab_size(), 7);
  EXPECT_EQ(data.encode("\xc3\xa9\x01").to_vector<int64_t>(), (std::vector<int64_t>{6, 5, 0}));
  EXPECT_EQ(data.decode(data.encode("caf\xc3\xa9")), "caf\xc3\xa9");
  EXPECT_THROW_MSG(data.encode("\xff"), "byte 255 at position 0");
}

TEST(CharacterText, WindowsAreShiftedByOneAndSplitTrainThenValidation) {
  TempDir dir("chartext");
  std::string text;
  for (int i = 0; i < 100; ++i) text += static_cast<char>('a' + (i * 7) % 26);
  io::CharacterText data({.path = dir.write("t.txt", text),
                          .block_size = 8,
                          .stride = 4,
                          .batch_size = 5,
                          .val_fraction = 0.2,
                          .num_workers = 0,
                          .shuffle = false});
  data.setup("fit");
  // 80 training tokens: windows start at 0, 4, ..., 68 (the last needs tokens up to 76 + 1).
  ASSERT_EQ(data.train_dataset()->size(), 18);
  ASSERT_EQ(data.val_dataset()->size(), 3);  // 20 tokens: starts 0, 4, 8
  for (int64_t i : {0, 5, 17}) {
    Batch b = data.train_dataset()->get(i);
    EXPECT_EQ(data.decode(b[0]), text.substr(static_cast<size_t>(4 * i), 8)) << i;
    EXPECT_EQ(data.decode(b[1]), text.substr(static_cast<size_t>(4 * i + 1), 8)) << i;
  }
  Batch v = data.val_dataset()->get(2);
  EXPECT_EQ(data.decode(v[0]), text.substr(88, 8));
  EXPECT_EQ(data.decode(v[1]), text.substr(89, 8));

  auto loader = data.train_dataloader();
  EXPECT_EQ(loader->size(), 4);  // 18 windows in batches of 5
  for (const Batch& b : loader->epoch(0)) {
    EXPECT_EQ(b[0].dtype(), DType::i64);
    EXPECT_EQ(b[0].shape(), b[1].shape());
    EXPECT_EQ(b[0].size(1), 8);
    break;
  }
  EXPECT_EQ(io::CharacterText({.path = data.options().path, .block_size = 8, .val_fraction = 0})
                .options()
                .stride,
            8);  // 0: the block size
}

TEST(CharacterText, BadInputSaysWhatWasExpected) {
  TempDir dir("chartext");
  EXPECT_THROW_MSG(io::CharacterText({.path = dir.str("absent.txt")}).prepare_data(), "absent.txt",
                   "expected a text file");
  if (!std::filesystem::exists(io::CharacterTextOptions().path))  // the default names its package
    EXPECT_THROW_MSG(io::CharacterText().prepare_data(), "apt-get install fortunes");
  const std::string empty_file = dir.write("empty.txt", "");
  EXPECT_THROW_MSG(io::CharacterText({.path = empty_file}).setup("fit"), "empty.txt", "is empty");
  const std::string short_file = dir.write("short.txt", "abcdefghij");
  EXPECT_THROW_MSG(
      io::CharacterText({.path = short_file, .block_size = 9, .val_fraction = 0.5}).setup("fit"),
      "training split", "has 5 tokens", "needs 10");
  EXPECT_THROW_MSG(
      io::CharacterText({.path = short_file, .block_size = 3, .val_fraction = 0.2}).setup("fit"),
      "validation split", "has 2 tokens", "needs 4");
  // A fraction too small for one validation token is an error, not a silent empty split.
  EXPECT_THROW_MSG(
      io::CharacterText({.path = short_file, .block_size = 3, .val_fraction = 0.05}).setup("fit"),
      "validation split", "has 0 tokens");
  EXPECT_THROW_MSG(io::CharacterText({.path = short_file, .block_size = 0}), "block_size");
  EXPECT_THROW_MSG(io::CharacterText({.path = short_file, .val_fraction = 1}), "val_fraction",
                   "[0, 1)");
  EXPECT_THROW_MSG(io::CharacterText({.path = short_file, .stride = -1}), "stride");

  io::CharacterText data({.path = short_file, .block_size = 3, .val_fraction = 0});
  EXPECT_THROW_MSG(data.vocab_size(), "setup");
  EXPECT_THROW_MSG(data.encode("abc"), "setup");
  EXPECT_THROW_MSG(data.train_dataloader(), "setup");
  EXPECT_THROW_MSG(data.setup("train"), "unknown stage 'train'");
  data.setup("fit");
  EXPECT_EQ(data.val_dataloader(), nullptr);
  EXPECT_THROW_MSG(data.encode("abz"), "'z' at position 2", "not in the vocabulary");
  EXPECT_THROW_MSG(data.decode(from_vector<int64_t>({0, 10})), "token 10 at position 1",
                   "vocabulary of 10");
  EXPECT_THROW_MSG(data.decode(from_vector<float>({0.f})), "i64 or i32");
  EXPECT_THROW_MSG(data.train_dataset()->get(3), "index 3", "3 windows");
}

// Little-endian unsigned ids of 1, 2 or 4 bytes (nanoGPT's train.bin is numpy uint16).
TEST(TokenFile, ReadsLittleEndianIdsOfEachWidth) {
  TempDir dir("tokens");
  const std::string bytes("\x01\x00\xff\xff\x34\x12\x00\x80", 8);
  const std::string path = dir.write("t.bin", bytes);
  EXPECT_EQ(io::read_token_file(path).to_vector<int64_t>(),
            (std::vector<int64_t>{1, 65535, 0x1234, 0x8000}));
  EXPECT_EQ(io::read_token_file(path, 4).to_vector<int64_t>(),
            (std::vector<int64_t>{0xffff0001, 0x80001234}));
  EXPECT_EQ(io::read_token_file(path, 1).to_vector<int64_t>(),
            (std::vector<int64_t>{1, 0, 255, 255, 0x34, 0x12, 0, 0x80}));
  io::TokenWindows windows(io::read_token_file(path, 1), 3, 2);
  ASSERT_EQ(windows.size(), 3);  // starts 0, 2, 4 (the last needs tokens 4..7)
  EXPECT_EQ(windows.get(2)[1].to_vector<int64_t>(), (std::vector<int64_t>{0x12, 0, 0x80}));

  EXPECT_THROW_MSG(io::read_token_file(dir.str("none.bin")), "no file", "none.bin");
  EXPECT_THROW_MSG(io::read_token_file(dir.str()), "no file", "expected a token file");
  EXPECT_THROW_MSG(io::read_token_file(dir.write("e.bin", "")), "is empty");
  EXPECT_THROW_MSG(io::read_token_file(dir.write("o.bin", std::string("abc"))), "3 bytes",
                   "2-byte tokens");
  EXPECT_THROW_MSG(io::read_token_file(path, 3), "1, 2 or 4");
}

// Windows read from the mapped file are those of the whole file read at once.
TEST(TokenFile, MappedWindowsEqualTheLoadedOnes) {
  TempDir dir("tokens_mapped");
  Generator gen(3);
  std::vector<int64_t> ids;
  for (float u : rand({1001}, {}, &gen).to_vector<float>())
    ids.push_back(static_cast<int64_t>(u * 65536.f) & 0xffff);
  std::string bytes;
  for (int64_t id : ids) bytes += {static_cast<char>(id & 0xff), static_cast<char>(id >> 8)};
  const std::string path = dir.write("train.bin", bytes);
  auto file = std::make_shared<io::TokenFile>(path);
  ASSERT_EQ(file->size(), 1001);
  EXPECT_EQ(file->read(0, 1001).to_vector<int64_t>(), ids);
  EXPECT_EQ(file->read(1000, 1).to_vector<int64_t>(), (std::vector<int64_t>{ids[1000]}));
  io::TokenWindows mapped(file, 64, 48), loaded(io::read_token_file(path), 64, 48);
  ASSERT_EQ(mapped.size(), loaded.size());
  ASSERT_EQ(mapped.size(), (1001 - 65) / 48 + 1);
  for (int64_t i = 0; i < mapped.size(); ++i)
    for (int k = 0; k < 2; ++k)
      ASSERT_EQ(mapped.get(i)[k].to_vector<int64_t>(), loaded.get(i)[k].to_vector<int64_t>())
          << "window " << i;
  EXPECT_THROW_MSG(file->read(990, 12), "tokens [990, 1002)", "1001 tokens");
  EXPECT_THROW_MSG(file->read(-1, 1), "tokens [-1, 0)");
  EXPECT_THROW_MSG(mapped.get(mapped.size()), "out of range");
  EXPECT_THROW_MSG(io::TokenWindows(std::shared_ptr<const io::TokenFile>(), 4, 4), "null");
}

TEST(CharGPT, APositionSeesNoLaterToken) {
  manual_seed(3);
  char_gpt::CharGPT model(
      {.vocab_size = 11, .block_size = 8, .n_embd = 16, .n_head = 2, .n_layer = 2});
  model.eval();
  NoGradGuard no_grad;
  Tensor a = from_vector<int64_t>({1, 5, 2, 9, 3, 3, 7, 0}, {1, 8});
  Tensor b = from_vector<int64_t>({1, 5, 2, 9, 4, 10, 6, 1}, {1, 8});  // from position 4 on
  Tensor la = model.forward(a), lb = model.forward(b);
  ASSERT_EQ(la.shape(), (Shape{1, 8, 11}));
  const float *pa = la.data<float>(), *pb = lb.data<float>();
  for (int64_t i = 0; i < 4 * 11; ++i) EXPECT_EQ(pa[i], pb[i]) << i;  // bit for bit
  double changed = 0;
  for (int64_t i = 4 * 11; i < 8 * 11; ++i) changed += std::abs(pa[i] - pb[i]);
  EXPECT_GT(changed, 1e-3);
  EXPECT_THROW_MSG(model.forward(zeros({1, 9}, {.dtype = DType::i64})), "T <= block_size 8",
                   "[1, 9]");
}

TEST(CharGPT, GenerateChecksItsArgumentsAndKeepsTheModulesMode) {
  manual_seed(4);
  char_gpt::CharGPT model(
      {.vocab_size = 5, .block_size = 4, .n_embd = 8, .n_head = 2, .n_layer = 1, .dropout = 0.5});
  Generator gen(2);
  const Tensor prompt = from_vector<int64_t>({1, 2});
  EXPECT_THROW_MSG(model.generate(zeros({0}, {.dtype = DType::i64}), 3, 1.0, gen), "t >= 1");
  EXPECT_THROW_MSG(model.generate(prompt, 3, 0.0, gen), "temperature > 0");
  EXPECT_THROW_MSG(model.generate(prompt.to(DType::f32), 3, 1.0, gen), "i64");
  ASSERT_TRUE(model.is_training());
  // Dropout is off while sampling (eval mode): the same generator state gives the same text.
  Generator g1(9), g2(9);
  const auto a = model.generate(prompt, 10, 1.0, g1), b = model.generate(prompt, 10, 1.0, g2);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.size(), 12u);
  for (int64_t t : a) EXPECT_TRUE(t >= 0 && t < 5) << t;
  EXPECT_TRUE(model.is_training());
}

// A text with period 13 is predictable from a few characters: a tiny model must get far
// below the ln(vocab) of guessing.
TEST(CharGPT, LearnsAPeriodicText) {
  TempDir dir("chargpt");
  std::string text;
  for (int i = 0; i < 120; ++i) text += "lumen trains ";
  seed_everything(5);
  io::CharacterText data({.path = dir.write("t.txt", text),
                          .block_size = 16,
                          .stride = 3,
                          .batch_size = 16,
                          .val_fraction = 0.1,
                          .num_workers = 0});
  data.setup("fit");
  char_gpt::CharGPT model({.vocab_size = data.vocab_size(),
                           .block_size = 16,
                           .n_embd = 32,
                           .n_head = 2,
                           .n_layer = 1,
                           .dropout = 0,
                           .lr = 3e-3});
  Trainer trainer({.max_epochs = 3,
                   .default_root_dir = dir.str(),
                   .enable_progress_bar = false,
                   .enable_checkpointing = false,
                   .enable_model_summary = false,
                   .logger = false,
                   .accelerator = "cpu"});
  trainer.fit(model, data);
  const double val_loss = trainer.callback_metrics().at("val_loss");
  EXPECT_LT(val_loss, 0.1 * std::log(double(data.vocab_size()))) << val_loss;

  model.eval();
  Generator gen(1);
  const std::string sample =
      data.decode(from_vector(model.generate(data.encode("lumen "), 26, 0.5, gen)));
  EXPECT_EQ(sample, "lumen trains lumen trains lumen ");
}

}  // namespace
}  // namespace lumen
