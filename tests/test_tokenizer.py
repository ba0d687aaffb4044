"""lycobench's CLIP tokenizer gives the same ids as open_clip's SimpleTokenizer (plus BOS/EOS) on every text
the world can produce, and world triggers do not share tokens with the base world's captions."""

import numpy as np
import open_clip.tokenizer
import pytest

from lycobench.tokenizer import clip_tokenizer
from lycobench.world import all_captions, sample_scenes
from lycobench.world.concepts import concept_caption, load_concepts, training_scenes

BOS, EOS = 49406, 49407


@pytest.fixture(scope="module")
def tokenizers():
    return clip_tokenizer(), open_clip.tokenizer.SimpleTokenizer()


def _same(tok, ref, texts):
    ours = tok(texts, add_special_tokens=True, truncation=False)["input_ids"]
    for text, ids in zip(texts, ours):
        assert ids == [BOS, *ref.encode(text), EOS], text


def world_texts() -> list[str]:
    texts = set()
    for scene in sample_scenes(70, 11) + sample_scenes(20, 12, heldout=True):
        texts.update(all_captions(scene))
    for c in load_concepts().values():
        texts.add(c.trigger)
        for leaf in c.leaves:
            texts.add(c.descriptor(leaf))
        texts.update(concept_caption(c, s) for _, _, s in training_scenes(c))
    return sorted(texts)


VARIED = [
    "",
    "a photo of a cat",
    "A Red CIRCLE on a Light-Blue background!!",
    "whoo anime girl, onex outfit, looking at viewer, blush, smile, simple background",
    "sks zwx qzx  multiple   spaces\tand\ttabs\nnewline",
    "numbers 3d 1024x768 12.5% and #hashtags @handles",
    "unicode: café, naïve, Zürich, 東京, emoji 🙂",
    "punctuation... (brackets) [square] {curly} 'quotes' \"double\"",
    "hyphen-ated words, under_scores, slashes/and\\backslashes",
    "a " * 30,
]


# open_clip cleans text with ftfy.fix_text and html.unescape before BPE; the transformers tokenizer (as SD 1.5
# uses it) does not. Texts with HTML entities, compatibility characters (NFKC) or mojibake therefore differ.
KNOWN_DIFFERENCES = [
    "fish &amp; chips",
    "\ufb01 ligature",
    "full-width \uff21\uff22\uff23",
    "mojibake \u00c3\u00a9",
]


def test_ids_equal_open_clip_on_varied_text(tokenizers):
    _same(*tokenizers, VARIED)


@pytest.mark.parametrize("text", KNOWN_DIFFERENCES)
@pytest.mark.xfail(strict=True, reason="open_clip applies ftfy + html.unescape; transformers does not")
def test_known_differences_from_open_clip_cleaning(tokenizers, text):
    _same(*tokenizers, [text])


def test_ids_equal_open_clip_on_every_world_caption(tokenizers):
    texts = world_texts()
    assert len(texts) > 1000
    _same(*tokenizers, texts)


def test_triggers_do_not_collide_with_the_base_world(tokenizers):
    _, ref = tokenizers
    # CLIP's BPE works word by word, so the tokens of every base caption are the tokens of its words
    words = set()
    for scene in sample_scenes(400, 13) + sample_scenes(50, 14, heldout=True):
        for text in all_captions(scene):
            words.update(text.replace(",", " , ").split())
    base = {i for w in words for i in ref.encode(w)}
    concepts = load_concepts().values()
    # the class words and keywords are ordinary words; only the rare trigger strings must be new
    seen: dict[int, str] = {}
    for c in concepts:
        words = [c.trigger] + [k.split()[0] for k in c.subclasses.values() if k.endswith(" outfit")]
        for w in words:
            ids = ref.encode(w)
            assert len(ids) <= 2, (w, ids)
            assert not set(ids) & base, f"{w!r} shares tokens with base captions"
            for i in ids:
                assert seen.setdefault(i, w) == w, f"{w!r} and {seen[i]!r} share a token"


def test_padding_is_eos(tokenizers):
    tok, _ = tokenizers
    ids = tok("a red star", padding="max_length", max_length=77)["input_ids"]
    assert len(ids) == 77 and ids[0] == BOS and ids[-1] == EOS
    assert np.all(np.array(ids[5:]) == EOS)
