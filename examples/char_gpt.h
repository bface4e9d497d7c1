#pragma once
// A character-level GPT (Radford et al., 2018; the shape of nanoGPT's shakespeare_char): token
// and learned position embeddings, a stack of pre-norm causal self-attention blocks
// (nn::TransformerEncoder with is_causal, GELU, dropout), a final layer norm and a linear head
// to the next token's logits. Trained with AdamW on cross entropy over every position.
#include <lumen/lumen.h>

#include <algorithm>
#include <vector>

namespace char_gpt {

using namespace lumen;

struct CharGPTOptions {
  int64_t vocab_size = 0;  // from the data (CharacterText::vocab_size)
  int64_t block_size = 64;
  int64_t n_embd = 128, n_head = 4, n_layer = 4;
  double dropout = 0.1;
  double lr = 1e-3;
};

struct CharGPT : LightningModule {
  CharGPTOptions opt;
  nn::Embedding token_embedding;
  Tensor pos_embedding;  // [1, block_size, n_embd]
  nn::Dropout drop;
  nn::TransformerEncoder blocks;
  nn::Linear head;

  explicit CharGPT(CharGPTOptions options)
      : opt(options),
        token_embedding(options.vocab_size, options.n_embd),
        drop(options.dropout),
        blocks(options.n_embd, options.n_head, options.n_layer,
               {.layer = {.dim_feedforward = 4 * options.n_embd,
                          .dropout = options.dropout,
                          .activation = "gelu",
                          .batch_first = true,
                          .norm_first = true},
                .final_norm = true}),
        head(options.n_embd, options.vocab_size) {
    register_module("token_embedding", token_embedding);
    pos_embedding = empty({1, opt.block_size, opt.n_embd});
    register_parameter("pos_embedding", pos_embedding);
    register_module("drop", drop);
    register_module("blocks", blocks);
    register_module("head", head);
    {
      NoGradGuard no_grad;
      nn::init::normal_(pos_embedding, 0.0, 0.02);
    }
    save_hyperparameters({{"vocab_size", opt.vocab_size},
                          {"block_size", opt.block_size},
                          {"n_embd", opt.n_embd},
                          {"n_head", opt.n_head},
                          {"n_layer", opt.n_layer},
                          {"dropout", opt.dropout},
                          {"lr", opt.lr}});
  }

  // idx i64 [B, T] (T <= block_size) -> logits [B, T, vocab_size]; position t sees tokens <= t.
  Tensor forward(const Tensor& idx) {
    LUMEN_CHECK(idx.dim() == 2 && idx.size(1) <= opt.block_size, "CharGPT: expected tokens [B, T] ",
                "with T <= block_size ", opt.block_size, ", got ", ShapeStr{idx.shape()});
    const int64_t T = idx.size(1);
    Tensor x = token_embedding(idx) + pos_embedding.narrow(1, 0, T);
    return head(blocks.forward(drop(x), {.is_causal = true}));
  }

  // Mean cross entropy of the next token over every position of the batch.
  Tensor loss(const Batch& b) {
    return nn::functional::cross_entropy(forward(b[0]).flatten(0, 1), b[1].flatten());
  }
  Tensor training_step(const Batch& b, int64_t) override {
    Tensor l = loss(b);
    log("train_loss", l, {.prog_bar = true});
    return l;
  }
  void validation_step(const Batch& b, int64_t) override {
    log("val_loss", loss(b), {.prog_bar = true, .sync_dist = true});
  }
  OptimizerConfig configure_optimizers() override {
    return optim::AdamW(parameters(), {.lr = opt.lr});
  }

  // `prompt` (i64 [t], t >= 1) followed by n sampled tokens: each drawn from softmax(logits /
  // temperature) at the last position, the context being the last block_size tokens. Runs in
  // eval mode (no dropout), then restores the module's mode.
  std::vector<int64_t> generate(const Tensor& prompt, int64_t n, double temperature,
                                Generator& gen) {
    LUMEN_CHECK(prompt.dim() == 1 && prompt.numel() >= 1 && prompt.dtype() == DType::i64,
                "CharGPT::generate: expected a prompt of i64 tokens [t] with t >= 1, got ",
                dtype_name(prompt.dtype()), " ", ShapeStr{prompt.shape()});
    LUMEN_CHECK(temperature > 0 && n >= 0, "CharGPT::generate: expected temperature > 0 and ",
                "n >= 0, got ", temperature, " and ", n);
    NoGradGuard no_grad;
    struct RestoreMode {
      CharGPT& m;
      bool training;
      ~RestoreMode() { m.train(training); }
    } restore{*this, is_training()};
    eval();
    const Tensor host = host_values(prompt.contiguous());
    std::vector<int64_t> tokens(host.data<int64_t>(), host.data<int64_t>() + host.numel());
    for (int64_t i = 0; i < n; ++i) {
      const int64_t t = std::min<int64_t>(opt.block_size, static_cast<int64_t>(tokens.size()));
      const std::vector<int64_t> context(tokens.end() - t, tokens.end());
      Tensor logits = forward(from_vector(context, {1, t}).to(device())).select(1, t - 1);
      Tensor probs = host_values(softmax(logits * (1.0 / temperature), -1));
      // Inverse transform: the first token whose cumulative probability passes u (the last
      // token of nonzero probability when rounding leaves the sum just under u).
      const double u = rand({}, {.dtype = DType::f64}, &gen).item();
      const float* p = probs.data<float>();
      int64_t next = -1;
      double cumulative = 0;
      for (int64_t v = 0; v < probs.numel() && next < 0; ++v)
        if ((cumulative += p[v]) > u) next = v;
      for (int64_t v = probs.numel() - 1; next < 0; --v)
        if (p[v] > 0) next = v;
      tokens.push_back(next);
    }
    return tokens;
  }
};

}  // namespace char_gpt
