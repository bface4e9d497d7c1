"""The PyTorch + Lightning twin of examples/char_gpt.cpp, for bench/compare_fashion_mnist.sh's
"gpt" model (CPU; --accelerator gpu runs it on a GPU).

Same data (a text file, by default the songs and poems of Debian's `fortunes` package, or
$CHAR_GPT_TEXT; the sorted distinct bytes are the vocabulary, the first 90% trains and the rest
validates, windows of 64 tokens every 32), same model (token and position embeddings, 4 pre-norm
causal encoder layers of width 128 with 4 heads, GELU and dropout 0.1, a final layer norm, a
linear head), same optimizer (AdamW, lr 1e-3), batch size and thread count. Prints the lines
lightning_fashion_mnist.py prints, with the last validation loss in place of a test accuracy.
"""
import argparse
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import lightning as L
from torch.utils.data import DataLoader, Dataset

from lightning_fashion_mnist import EpochTimer

TEXT = os.environ.get("CHAR_GPT_TEXT", "/usr/share/games/fortunes/songs-poems")


class TokenWindows(Dataset):
    """Example i: tokens [s, s + block) and [s + 1, s + block + 1) with s = i * stride."""

    def __init__(self, tokens, block, stride):
        self.tokens, self.block, self.stride = tokens, block, stride

    def __len__(self):
        return max(0, (len(self.tokens) - self.block - 1) // self.stride + 1)

    def __getitem__(self, i):
        s = i * self.stride
        return self.tokens[s:s + self.block], self.tokens[s + 1:s + self.block + 1]


class CharGPT(L.LightningModule):
    def __init__(self, vocab, block=64, dim=128, heads=4, layers=4, dropout=0.1, lr=1e-3):
        super().__init__()
        self.lr = lr
        self.token_embedding = nn.Embedding(vocab, dim)
        self.pos_embedding = nn.Parameter(torch.randn(1, block, dim) * 0.02)
        self.drop = nn.Dropout(dropout)

        def layer():
            return nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=dropout,
                                              activation="gelu", batch_first=True,
                                              norm_first=True)
        self.blocks = nn.TransformerEncoder(layer(), layers, norm=nn.LayerNorm(dim),
                                            enable_nested_tensor=False)
        # Lumen initialises each layer on its own (TransformerEncoder deep-copies one).
        self.blocks.layers = nn.ModuleList([layer() for _ in range(layers)])
        self.head = nn.Linear(dim, vocab)

    def forward(self, idx):
        t = idx.shape[1]
        x = self.drop(self.token_embedding(idx) + self.pos_embedding[:, :t])
        mask = nn.Transformer.generate_square_subsequent_mask(t, device=idx.device)
        return self.head(self.blocks(x, mask=mask, is_causal=True))

    def loss(self, batch):
        x, y = batch
        return F.cross_entropy(self(x).flatten(0, 1), y.flatten())

    def training_step(self, batch, batch_idx):
        loss = self.loss(batch)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self.loss(batch), prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.lr)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    p.add_argument("--precision", default="32", choices=["32", "16-mixed", "bf16-mixed"])
    a = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_num_threads(a.threads)
    L.seed_everything(42, verbose=False)
    raw = np.frombuffer(open(TEXT, "rb").read(), dtype=np.uint8)
    vocab, tokens = np.unique(raw, return_inverse=True)
    tokens = torch.from_numpy(tokens.astype(np.int64))
    n_train = len(tokens) - int(0.1 * len(tokens))
    train = TokenWindows(tokens[:n_train], 64, 32)
    val = TokenWindows(tokens[n_train:], 64, 32)
    model = CharGPT(len(vocab))
    trainer = L.Trainer(max_epochs=a.epochs, accelerator=a.accelerator, devices=1, logger=False,
                        precision=a.precision, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, callbacks=[EpochTimer()])
    gpu = a.accelerator == "gpu"
    loader = dict(batch_size=a.batch_size, num_workers=a.workers,
                  persistent_workers=a.workers > 0, pin_memory=gpu)
    trainer.fit(model, DataLoader(train, shuffle=True, **loader), DataLoader(val, **loader))
    print(f"val_loss={trainer.callback_metrics['val_loss']:.4f}", flush=True)
    if gpu:
        print(f"peak_mem_bytes={torch.cuda.max_memory_allocated()}", flush=True)


if __name__ == "__main__":
    main()
