"""The real CLIP BPE tokenizer, built offline from the vocabulary that open_clip bundles.

SD 1.5's tokenizer cannot be downloaded here, but open_clip ships the same BPE merges
(``bpe_simple_vocab_16e6.txt.gz``). Rebuilding the vocabulary from them gives token ids equal to
open_clip's ``SimpleTokenizer`` and to SD 1.5's ``CLIPTokenizer``.
"""

from __future__ import annotations

import functools
import gzip
import json
from pathlib import Path

N_MERGES = 49152 - 256 - 2  # as in CLIP: the vocabulary is 49408 = 512 bytes + merges + 2 specials
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _bytes_to_unicode() -> list[str]:
    """CLIP's reversible map from the 256 byte values to printable unicode characters."""
    keep = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    # CLIP orders the printable bytes first, then the remapped ones
    printable = [chr(b) for b in keep]
    remapped = [c for b, c in zip(range(256), chars, strict=True) if b not in keep]
    return printable + remapped


@functools.cache
def vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    """The 49,408-entry vocabulary and the 48,894 merges, as CLIP defines them."""
    import open_clip.tokenizer

    with gzip.open(open_clip.tokenizer.default_bpe(), "rt", encoding="utf-8") as f:
        merges = f.read().split("\n")[1 : N_MERGES + 1]
    symbols = _bytes_to_unicode()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges] + [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}, merges


def clip_tokenizer(model_max_length: int = 77):
    """A transformers ``CLIPTokenizer`` equal to SD 1.5's (BOS 49406, EOS and padding 49407)."""
    from transformers import CLIPTokenizer

    vocab, merges = vocab_and_merges()
    # transformers 5 ignores vocab_file/merges_file arguments: pass the data itself.
    return CLIPTokenizer(
        vocab=dict(vocab),
        merges=[tuple(m.split()) for m in merges],
        model_max_length=model_max_length,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=EOS,
        unk_token=EOS,
    )


def save_tokenizer(tokenizer, folder: Path) -> None:
    """Save so that both transformers 4 and 5 load it: add vocab.json and merges.txt beside tokenizer.json."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)
    vocab, merges = vocab_and_merges()
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
