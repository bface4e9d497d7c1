"""The PyTorch + Lightning twin of examples/fashion_mnist_{mlp,cnn,wide_mlp,vit,gan}.cpp, for
bench/compare_fashion_mnist.sh (CPU) and bench/gpu_compare.sh (GPU). With --fabric, the twin of
examples/fabric_fashion_mnist.cpp instead: the same model trained by a hand-written loop on
Lightning Fabric. "gan" is the GAN of examples/fashion_mnist_gan.cpp (manual optimization, two
optimizers, pixels in [0, 1] rather than normalised, no validation or test).

Same data (the Debian dataset-fashion-mnist IDX files, or $FASHION_MNIST_DIR, normalised once
with mean 0.2860 and std 0.3530, 55000/5000 train/val split), same models and initialisation
scheme (PyTorch's defaults, which Lumen's layers copy), same optimizer (AdamW, lr 1e-3), same
batch size (validation and test too, as Lumen's FashionMNIST) and thread count. Prints one
machine-readable line per epoch and the time of the first training step, which the shell
scripts turn into tables. On a GPU the epoch timer synchronizes the device at each of its
marks, so queued kernels are counted in the epoch they belong to.
"""
import argparse
import gzip
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import lightning as L
from torch.utils.data import DataLoader, TensorDataset, random_split

DATA = os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")


def read_idx(name):
    with gzip.open(os.path.join(DATA, name), "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def tensors(split, normalize=True):
    x = read_idx(f"{split}-images-idx3-ubyte.gz").astype(np.float32)
    y = read_idx(f"{split}-labels-idx1-ubyte.gz").astype(np.int64)
    x = x / 255.0
    if normalize:
        x = (x - 0.2860) / 0.3530
    return torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y)


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))


def wide_mlp():
    layers = [nn.Flatten(), nn.Linear(784, 4096), nn.ReLU()]
    for _ in range(3):
        layers += [nn.Linear(4096, 4096), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(4096, 10))


def cnn():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


class PatchEmbedding(nn.Module):
    """[N, 1, 28, 28] -> [N, 16, 64]: 7x7 patches projected, plus a position embedding."""

    def __init__(self, dim, patch=7):
        super().__init__()
        self.proj = nn.Conv2d(1, dim, patch, stride=patch)
        self.pos_embedding = nn.Parameter(torch.randn(1, (28 // patch) ** 2, dim) * 0.02)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2) + self.pos_embedding


class TokenMean(nn.Module):
    def forward(self, x):
        return x.mean(1)


def vit(dim=64):
    def layer():
        return nn.TransformerEncoderLayer(dim, 4, 2 * dim, dropout=0.1, activation="gelu",
                                          batch_first=True, norm_first=True)
    encoder = nn.TransformerEncoder(layer(), 2, norm=nn.LayerNorm(dim), enable_nested_tensor=False)
    # TransformerEncoder deep-copies its layer (both would start equal); Lumen's initialises
    # each layer on its own.
    encoder.layers = nn.ModuleList([layer() for _ in range(2)])
    return nn.Sequential(PatchEmbedding(dim), encoder, TokenMean(), nn.Linear(dim, 10))


class Classifier(L.LightningModule):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_acc", (self.net(x).argmax(1) == y).float().mean(), prog_bar=True)

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test_acc", (self.net(x).argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


class Gan(L.LightningModule):
    """Lightning's GAN example (domain_templates/generative_adversarial_net.py) with the MLPs of
    examples/fashion_mnist_gan.cpp: the generator's step with the discriminator toggled off, then
    the discriminator's on real images and the updated generator's."""

    def __init__(self, latent_dim=100):
        super().__init__()
        self.automatic_optimization = False
        self.latent_dim = latent_dim
        self.generator = nn.Sequential(
            nn.Linear(latent_dim, 256), nn.LeakyReLU(0.2), nn.Linear(256, 512), nn.LeakyReLU(0.2),
            nn.Linear(512, 784), nn.Tanh())
        self.discriminator = nn.Sequential(
            nn.Linear(784, 512), nn.LeakyReLU(0.2), nn.Linear(512, 256), nn.LeakyReLU(0.2),
            nn.Linear(256, 1))

    def training_step(self, batch, batch_idx):
        opt_g, opt_d = self.optimizers()
        real = batch[0].reshape(-1, 784) * 2 - 1
        n = real.shape[0]
        z = torch.randn(n, self.latent_dim, device=self.device)
        is_real = torch.ones(n, 1, device=self.device)
        is_fake = torch.zeros(n, 1, device=self.device)

        self.toggle_optimizer(opt_g)
        g_loss = F.binary_cross_entropy_with_logits(self.discriminator(self.generator(z)), is_real)
        opt_g.zero_grad()
        self.manual_backward(g_loss)
        opt_g.step()
        self.untoggle_optimizer(opt_g)

        self.toggle_optimizer(opt_d)
        with torch.no_grad():
            fake = self.generator(z)
        d_loss = (F.binary_cross_entropy_with_logits(self.discriminator(real), is_real) +
                  F.binary_cross_entropy_with_logits(self.discriminator(fake), is_fake)) * 0.5
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()
        self.untoggle_optimizer(opt_d)

        self.log("g_loss", g_loss, prog_bar=True)
        self.log("d_loss", d_loss, prog_bar=True)

    def configure_optimizers(self):
        o = dict(lr=2e-4, betas=(0.5, 0.999))
        return [torch.optim.Adam(self.generator.parameters(), **o),
                torch.optim.Adam(self.discriminator.parameters(), **o)]


def now(module):
    """The wall clock once the device of the module (or Fabric) has finished what was queued on
    it."""
    if module.device.type == "cuda":
        torch.cuda.synchronize(module.device)
    return time.perf_counter()


class EpochTimer(L.Callback):
    """Prints the wall time of each training epoch (its validation pass excluded, as in the
    Lumen examples' EpochTimer) and of the first step. trainer.training is already false in
    on_validation_start; trainer.state.fn says whether a fit runs."""

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == 0 and batch_idx == 0:
            print(f"first_step_unix={time.time():.6f}", flush=True)

    def on_train_epoch_start(self, trainer, module):
        self.t0 = now(module)

    def on_validation_start(self, trainer, module):
        if trainer.state.fn == "fit":
            self.paused = now(module)

    def on_validation_end(self, trainer, module):
        if trainer.state.fn == "fit" and hasattr(self, "paused") and hasattr(self, "t0"):
            self.t0 += now(module) - self.paused

    def on_train_epoch_end(self, trainer, module):
        print(f"epoch={trainer.current_epoch} train_seconds={now(module) - self.t0:.4f}",
              flush=True)


def fabric_main(a, net, train, test, loader):
    """The loop of examples/fabric_fashion_mnist.cpp in --bench mode: epochs without validation
    (the Trainer runs' epoch times leave it out too), then the test accuracy."""
    fabric = L.Fabric(accelerator=a.accelerator, devices=1, precision=a.precision)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    model, optimizer = fabric.setup(net, optimizer)
    train_loader, test_loader = fabric.setup_dataloaders(
        DataLoader(train, shuffle=True, **loader), DataLoader(test, **loader))
    step = 0
    for epoch in range(a.epochs):
        t0 = now(fabric)
        for x, y in train_loader:
            if step == 0:
                print(f"first_step_unix={time.time():.6f}", flush=True)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            fabric.backward(loss)
            optimizer.step()
            step += 1
        print(f"epoch={epoch} train_seconds={now(fabric) - t0:.4f}", flush=True)
    model.eval()
    correct = seen = 0
    with torch.no_grad():
        for x, y in test_loader:
            correct += (model(x).argmax(1) == y).sum().item()
            seen += y.numel()
    print(f"test_acc={correct / seen:.4f}", flush=True)
    if a.accelerator == "gpu":
        print(f"peak_mem_bytes={torch.cuda.max_memory_allocated()}", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model", choices=["mlp", "cnn", "wide_mlp", "vit", "gan"])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    # Loader processes; Lumen's FashionMNIST loads with 2 threads (num_workers = 2).
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    p.add_argument("--precision", default="32", choices=["32", "16-mixed", "bf16-mixed"])
    p.add_argument("--fabric", action="store_true")
    a = p.parse_args()
    # Lumen computes f32 convolutions and GEMMs in strict f32; so does PyTorch here (its default
    # lets cuDNN use TF32 for convolutions).
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_num_threads(a.threads)
    L.seed_everything(42, verbose=False)
    gan = a.model == "gan"
    x, y = tensors("train", normalize=not gan)
    train, val = random_split(TensorDataset(x, y), [55000, 5000],
                              generator=torch.Generator().manual_seed(42))
    test = TensorDataset(*tensors("t10k"))
    net = None if gan else {"mlp": mlp, "cnn": cnn, "wide_mlp": wide_mlp, "vit": vit}[a.model]()
    gpu = a.accelerator == "gpu"
    loader = dict(batch_size=a.batch_size, num_workers=a.workers,
                  persistent_workers=a.workers > 0, pin_memory=gpu)
    if a.fabric:
        return fabric_main(a, net, train, test, loader)
    trainer = L.Trainer(max_epochs=a.epochs, accelerator=a.accelerator, devices=1, logger=False,
                        precision=a.precision,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0,
                        callbacks=[EpochTimer()])
    if gan:
        model = Gan()
        trainer.fit(model, DataLoader(train, shuffle=True, **loader))
        if gpu:
            print(f"peak_mem_bytes={torch.cuda.max_memory_allocated()}", flush=True)
        return
    model = Classifier(net)
    trainer.fit(model, DataLoader(train, shuffle=True, **loader), DataLoader(val, **loader))
    res = trainer.test(model, DataLoader(test, **loader), verbose=False)
    print(f"test_acc={res[0]['test_acc']:.4f}", flush=True)
    if gpu:
        # Peak over the whole run (training, validation, test), as Lumen's peak_allocated.
        print(f"peak_mem_bytes={torch.cuda.max_memory_allocated()}", flush=True)


if __name__ == "__main__":
    main()
