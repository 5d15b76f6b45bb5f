"""The streaming mix: bounded memory, token shares along the stream, copies spread in rounds,
seeded determinism, and the mix_pack stage on a synthetic curated folder."""

from __future__ import annotations

import gzip
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from mcbio.config.curation import MixConfig, PackConfig
from mcbio.data.curation.mix import PREPARE_BATCH, GroupTally, MixDoc, StreamingMix, shuffle_buffer
from mcbio.data.curation.stages import MixPackStep
from mcbio.data.shards import PackedShards

SHARES = {"articles": 0.70, "ontobook": 0.20, "emea": 0.06, "e3c": 0.04}


class Tracked:
    """A payload that counts how many instances are alive (spooled ones are not: they are on disk)."""

    alive = 0
    peak = 0

    def __init__(self, value: int) -> None:
        self.value = value
        Tracked.alive += 1
        Tracked.peak = max(Tracked.peak, Tracked.alive)

    def __reduce__(self):  # unpickling goes through __init__, so spool reads are counted
        return Tracked, (self.value,)

    def __del__(self) -> None:
        Tracked.alive -= 1


def synthetic_groups(n_articles: int, seed: int = 0):
    """(documents per group as (key, tokens, factor), tallies); articles carry the paper's factors."""
    rng = np.random.default_rng(seed)
    factors = (4.3, 8.5, 12.8, 21.3, 34.1)
    docs = {
        "articles": [(f"a{i}", int(rng.integers(50, 150)), factors[i % 5]) for i in range(n_articles)],
        "ontobook": [(f"o{i}", int(rng.integers(100, 300)), 1.0) for i in range(n_articles // 2)],
        "emea": [(f"m{i}", int(rng.integers(40, 120)), 1.0) for i in range(n_articles // 4)],
        "e3c": [(f"e{i}", int(rng.integers(60, 200)), 1.0) for i in range(n_articles // 5)],
    }
    tallies = {}
    for group, rows in docs.items():
        tally = tallies.setdefault(group, GroupTally())
        for _, tokens, factor in rows:
            tally.add(tokens, factor)
    return docs, tallies


def make_mix(docs, tallies, total_tokens, seed=42, buffer_size=64, opens=None, tracked=False, order=None):
    def open_group(group):
        if opens is not None:
            opens[group] += 1
        rows = docs[group] if order is None else [docs[group][i] for i in order(len(docs[group]))]
        for key, tokens, factor in rows:
            yield MixDoc(key, tokens, factor, Tracked(tokens) if tracked else (key, tokens))

    return StreamingMix(open_group, tallies, SHARES, total_tokens, seed, buffer_size=buffer_size)


def test_mix_streams_with_bounded_memory():
    docs, tallies = synthetic_groups(4000)
    opens = Counter()
    mix = make_mix(docs, tallies, total_tokens=1_500_000, buffer_size=64, opens=opens, tracked=True)
    Tracked.alive = Tracked.peak = 0
    emitted = 0
    for _, item in mix:
        emitted += 1
        del item
    copies = sum(g["copies"] for g in mix.report["groups"].values())
    assert emitted == copies > 10_000  # 7,800 documents, articles upsampled
    # Alive at once: the shuffle buffer, one pending batch per group and a few in flight;
    # a mixer that materialised its plan or the corpus would hold thousands.
    bound = 64 + len(SHARES) * PREPARE_BATCH + 8
    assert 64 <= Tracked.peak <= bound, Tracked.peak
    assert Tracked.alive == 0
    # Each group's source is read once: later copies come from the spool, not from re-reading.
    assert dict(opens) == {g: 1 for g in SHARES}


def test_mix_shares_hold_along_the_stream_and_copies_are_spread():
    docs, tallies = synthetic_groups(1500)
    mix = make_mix(docs, tallies, total_tokens=600_000, buffer_size=32)
    stream = [payload for _, payload in mix]
    report = mix.report
    for group, share in SHARES.items():
        assert report["groups"][group]["share_mixed"] == pytest.approx(share, abs=0.01)
    assert report["tokens_mixed"] == pytest.approx(600_000, rel=0.02)
    # The groups are interleaved, not concatenated: the first fifth already has the shares.
    head = stream[: len(stream) // 5]
    head_tokens = Counter()
    for key, tokens in head:
        head_tokens[{"a": "articles", "o": "ontobook", "m": "emea", "e": "e3c"}[key[0]]] += tokens
    for group, share in SHARES.items():
        assert head_tokens[group] / sum(head_tokens.values()) == pytest.approx(share, abs=0.03), group
    # Copies of a document are a round apart, never neighbours: typically a whole pass over the
    # group; at least the last (smallest) round, of the documents drawn one extra copy.
    positions = defaultdict(list)
    for pos, (key, _) in enumerate(stream):
        positions[key].append(pos)
    gaps = [b - a for p in positions.values() for a, b in zip(p, p[1:])]
    assert gaps and min(gaps) > 100 and np.median(gaps) > 1000, (min(gaps), np.median(gaps))
    # Expected copies per article: factor x scale (floor or floor + 1).
    scale = report["groups"]["articles"]["scale"]
    for key, tokens, factor in docs["articles"][:200]:
        assert len(positions[key]) in (int(factor * scale), int(factor * scale) + 1)


def test_mix_is_seeded_and_copy_draws_do_not_depend_on_file_order():
    docs, tallies = synthetic_groups(600)
    run = lambda **kw: [p for _, p in make_mix(docs, tallies, total_tokens=200_000, **kw)]  # noqa: E731
    first = run(seed=42)
    assert first == run(seed=42)
    assert first != run(seed=7)
    reversed_order = run(seed=42, order=lambda n: range(n - 1, -1, -1))
    assert Counter(first) == Counter(reversed_order)  # same documents, same copies
    assert first != reversed_order


def test_shuffle_buffer_keeps_every_item_once():
    out = list(shuffle_buffer(iter(range(1000)), 50, seed=3))
    assert sorted(out) == list(range(1000)) and out != list(range(1000))
    # An item leaves at most ~buffer positions early: it cannot be emitted before it is read.
    assert all(pos >= item - 50 for pos, item in enumerate(out))
    assert list(shuffle_buffer(iter(range(10)), 1, seed=3)) == list(range(10))


# --------------------------------------------------------------------------- the mix_pack stage

WORDS = ("patient", "traitement", "diagnostic", "biopsie", "examen", "symptôme", "hôpital", "dose",
         "la", "le", "de", "et", "un", "une", "les", "des")


def write_curated(folder: Path, bad_line: bool = False, rename: dict | None = None) -> None:
    rng = np.random.default_rng(0)
    counts = {"articles": 120, "ontobook": 60, "emea": 30, "e3c": 20}
    for group, n in counts.items():
        (folder / group).mkdir(parents=True)
        for part in range(2):
            with gzip.open(folder / group / f"{part:05d}.jsonl.gz", "wt", encoding="utf-8") as out:
                for i in range(part, n, 2):
                    k = int(rng.integers(20, 60))
                    text = " ".join(rng.choice(WORDS, k)) + "."
                    factor = (4.3, 8.5, 34.1)[i % 3] if group == "articles" else 1.0
                    meta = {"mix_group": (rename or {}).get(group, group), "n_tokens": k + 1,
                            "upsample_factor": factor}
                    out.write(json.dumps({"text": text, "id": f"{group}/{i}", "metadata": meta}) + "\n")
                if bad_line and group == "emea" and part == 1:
                    out.write('{"text": "tronqué", "metadata": \n')


def run_stage(curated: Path, out: Path, seed: int = 42) -> dict:
    step = MixPackStep(str(curated), str(out), MixConfig(total_tokens=60_000, seed=seed, shuffle_buffer=50),
                       PackConfig(tokenizer=None, tokenizer_vocab_size=120, seq_len=64, sequences_per_shard=200))
    return step.mix_and_pack()


def test_mix_pack_stage_streams_into_shards(tmp_path):
    write_curated(tmp_path / "curated")
    report = run_stage(tmp_path / "curated", tmp_path / "run1")
    saved = json.loads((tmp_path / "run1" / "mix_report.json").read_text())
    assert saved == report
    for group, share in SHARES.items():
        g = saved["groups"][group]
        assert set(g) >= {"tokens_mixed", "share_mixed", "tokens_available", "tokens_target", "copies", "scale"}
        assert g["share_mixed"] == pytest.approx(share, abs=0.02), group
    shards = PackedShards(tmp_path / "run1" / "shards")
    pack = json.loads((tmp_path / "run1" / "pack_report.json").read_text())
    assert pack["documents"] == sum(g["copies"] for g in saved["groups"].values())
    assert pack["tokens"] == saved["tokens_packed"] and len(shards) == pack["sequences"] > 0
    assert not (tmp_path / "run1" / "mix_spool").exists()  # spooled copies are cleaned up
    # Same seed, same shards; another seed, another order.
    run_stage(tmp_path / "curated", tmp_path / "run2")
    run_stage(tmp_path / "curated", tmp_path / "run3", seed=7)
    rows = lambda run: np.load(tmp_path / run / "shards" / "shard-00000" / "input_ids.npy")  # noqa: E731
    assert np.array_equal(rows("run1"), rows("run2"))
    assert not np.array_equal(rows("run1"), rows("run3"))


def test_mix_pack_stage_names_the_bad_line(tmp_path):
    write_curated(tmp_path / "curated", bad_line=True)
    with pytest.raises(ValueError, match=r"emea/00001\.jsonl\.gz:\d+: invalid JSON"):
        run_stage(tmp_path / "curated", tmp_path / "run")


def test_mix_pack_stage_refuses_a_group_name_the_config_does_not_know(tmp_path):
    """One name per group (mcbio.config.curation.MIX_GROUPS): another spelling is not silently left out."""
    write_curated(tmp_path / "curated", rename={"articles": "curated_articles"})
    with pytest.raises(ValueError, match=r"articles/00000\.jsonl\.gz:1: unknown mix_group 'curated_articles'"):
        run_stage(tmp_path / "curated", tmp_path / "run")
