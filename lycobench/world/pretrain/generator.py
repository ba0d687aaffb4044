"""The world's UNet and text encoder, trained jointly from scratch on cached VAE latents.

Recipe B of the notes, on 8-channel latents: a 7 M-parameter UNet with cross-attention at every level and a
3-layer, 128-d ``CLIPTextModel`` whose token embedding stays frozen at its seeded random initialisation (the
49,408-row table is most of its weights; freezing it keeps words the world never uses -- trigger words --
as untrained random vectors, so concepts start from nothing). Epsilon prediction, min-SNR-5 weighting,
10% caption dropout (for classifier-free guidance), gradient clipping, EMA weights for sampling.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...sd_pipeline import SCHEDULER_KW
from ...state_io import StateFileError, load_state, save_state
from .data import WorldData

TEXT_CONFIG = dict(
    vocab_size=49408,
    hidden_size=128,
    intermediate_size=512,
    num_hidden_layers=3,
    num_attention_heads=4,
    max_position_embeddings=77,
    bos_token_id=49406,
    eos_token_id=49407,
    pad_token_id=49407,
)
UNET_CONFIG = dict(
    sample_size=8,
    in_channels=8,
    out_channels=8,
    block_out_channels=(64, 128, 128),
    layers_per_block=1,
    down_block_types=("CrossAttnDownBlock2D",) * 3,
    up_block_types=("CrossAttnUpBlock2D",) * 3,
    cross_attention_dim=128,
    attention_head_dim=(2, 4, 4),  # diffusers reads this as the number of heads: 32-d heads
    norm_num_groups=32,
)
MIN_SNR = 5.0
CAPTION_DROPOUT = 0.1
EMA = 0.998


def build(seed: int, latent_channels: int = UNET_CONFIG["in_channels"]):
    """Seeded UNet (its input and output channels those of the VAE's latents), text encoder and noise
    scheduler (SD 1.5's classes and schedule)."""
    from diffusers import DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG))
    torch.manual_seed(seed + 1)
    unet = UNet2DConditionModel(
        **{**UNET_CONFIG, "in_channels": latent_channels, "out_channels": latent_channels}
    )
    return unet, text_encoder, DDIMScheduler(**SCHEDULER_KW)


def token_embedding(text_encoder) -> torch.nn.Embedding:
    return text_encoder.get_input_embeddings()


def lr_lambda(steps: int, warmup: int = 200) -> Callable[[int], float]:
    """Linear warm-up, then cosine decay to 10% at the end of the run."""

    def f(s: int) -> float:
        if s < warmup:
            return (s + 1) / warmup
        return 0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, (s - warmup) / max(1, steps - warmup))))

    return f


def training_noise(shape: torch.Size, gen: torch.Generator, offset: float = 0.0) -> torch.Tensor:
    """Gaussian noise, plus (``offset`` > 0) one random shift per image and channel ("offset noise").

    More than half the energy of the world's latents is each image's per-channel mean (mostly the
    background colour), and plain noise on an 8x8 grid hides a mean poorly even at the last timestep, so a
    UNet learns to copy the background from the noise instead of reading it from the prompt. The shift
    hides the mean at high noise levels, so the prompt has to supply it.
    """
    noise = torch.randn(shape, generator=gen)
    if offset:
        noise = noise + offset * torch.randn((*shape[:2], 1, 1), generator=gen)
    return noise


class Trainer:
    """Joint UNet + text-encoder training; ``train`` calls ``snapshot(step)`` every ``snapshot_every`` steps."""

    def __init__(
        self,
        data: WorldData,
        latents: torch.Tensor,
        tokenizer,
        seed: int,
        batch: int = 32,
        lr: float = 1e-3,
        noise_offset: float = 0.0,
    ):
        self.data, self.latents, self.tokenizer = data, latents, tokenizer
        self.batch, self.lr, self.seed, self.noise_offset = batch, lr, seed, noise_offset
        self.unet, self.text_encoder, self.scheduler = build(seed, latents.shape[1])
        token_embedding(self.text_encoder).weight.requires_grad_(False)
        self.unet_ema = copy.deepcopy(self.unet).requires_grad_(False).eval()
        self.te_ema = copy.deepcopy(self.text_encoder).requires_grad_(False).eval()
        self.params = [p for m in (self.unet, self.text_encoder) for p in m.parameters() if p.requires_grad]
        self.alphas = self.scheduler.alphas_cumprod.float()
        self.empty = self.tokenize([""])

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(
            texts, padding="max_length", truncation=True, max_length=77, return_tensors="pt"
        ).input_ids

    def loss(self, idx: np.ndarray, gen: torch.Generator, rng: np.random.Generator) -> torch.Tensor:
        texts = self.data.captions(idx.tolist(), rng)
        texts = ["" if rng.random() < CAPTION_DROPOUT else t for t in texts]
        cond = self.text_encoder(self.tokenize(texts))[0]
        x0 = self.latents[idx]
        noise = training_noise(x0.shape, gen, self.noise_offset)
        t = torch.randint(0, len(self.alphas), (len(idx),), generator=gen)
        a = self.alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
        pred = self.unet(noisy, t, encoder_hidden_states=cond).sample
        snr = (a / (1 - a)).view(-1)
        weight = snr.clamp(max=MIN_SNR) / snr  # min-SNR-gamma for epsilon prediction
        per = F.mse_loss(pred, noise, reduction="none").mean(dim=(1, 2, 3))
        return (weight * per).mean()

    @torch.no_grad()
    def _ema_update(self) -> None:
        for ema, live in ((self.unet_ema, self.unet), (self.te_ema, self.text_encoder)):
            for pe, pl in zip(ema.parameters(), live.parameters()):
                pe.lerp_(pl, 1 - EMA)

    def _modules(self) -> dict:
        return {"unet": self.unet, "te": self.text_encoder, "unet_ema": self.unet_ema, "te_ema": self.te_ema}

    def _save_state(self, path: Path, settings: dict, step: int, opt, sched, gen, rng) -> None:
        """Everything the loop carries (weights, EMA, optimiser, schedule, both RNG streams), atomically:
        a run killed at any moment resumes from its last state as if it had never stopped."""
        state = {
            "settings": settings,
            "step": step,
            "modules": {k: m.state_dict() for k, m in self._modules().items()},
            "opt": opt.state_dict(),
            "sched": sched.state_dict(),
            "gen": gen.get_state(),
            "rng": rng.bit_generator.state,
        }
        save_state(path, state)  # safetensors + JSON: resuming never unpickles

    def _load_state(self, path: Path | None, settings: dict | None, opt, sched, gen, rng) -> int:
        """The step to start from: the saved one when ``path`` holds a state of these settings, else 0."""
        if path is None or not path.is_file():
            return 0
        try:
            state = load_state(path)
        except StateFileError:  # not a state this code wrote (or damaged): start over
            return 0
        if state.get("settings") != settings:
            return 0
        for k, m in self._modules().items():
            m.load_state_dict(state["modules"][k])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        gen.set_state(state["gen"])
        rng.bit_generator.state = state["rng"]
        return state["step"]

    def train(
        self,
        steps: int,
        log: Callable[[dict], None] | None = None,
        snapshot: Callable[[int], None] | None = None,
        snapshot_every: int = 500,
        state_path: Path | None = None,
        settings: dict | None = None,
    ) -> None:
        """``state_path``: where the loop's state is saved at every snapshot, and resumed from when it was
        saved with the same ``settings`` (a restarted run continues; the result equals an unbroken run's)."""
        gen = torch.Generator().manual_seed(self.seed + 7)
        rng = np.random.default_rng(self.seed + 11)
        opt = torch.optim.AdamW(self.params, lr=self.lr, weight_decay=0.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(steps))
        start = self._load_state(state_path, settings, opt, sched, gen, rng)
        if start and log is not None:
            log({"stage": "unet-resumed", "step": start, "of": steps, "file": str(state_path)})
        self.unet.train()
        self.text_encoder.train()
        t0, smooth = time.time(), None
        for step in range(start, steps):
            idx = torch.randint(0, len(self.latents), (self.batch,), generator=gen).numpy()
            loss = self.loss(idx, gen, rng)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.params, 1.0)
            opt.step()
            sched.step()
            self._ema_update()
            value = float(loss.detach())
            smooth = value if smooth is None else 0.98 * smooth + 0.02 * value
            if log is not None and (step % 50 == 0 or step == steps - 1):
                log(
                    {
                        "stage": "unet",
                        "step": step + 1,
                        "of": steps,
                        "loss": value,
                        "smooth": smooth,
                        "lr": opt.param_groups[0]["lr"],
                        "s": time.time() - t0,
                    }
                )
            if (step + 1) % snapshot_every == 0 or step == steps - 1:
                if state_path is not None:
                    self._save_state(state_path, settings, step + 1, opt, sched, gen, rng)
                if snapshot is not None:
                    snapshot(step + 1)
