"""The voices of the eSpeak NG corpus: voice families per split (held-out splits hear
families never heard in training) and the speakers made from them.

A speaker is a voice variant with its own (pitch, range, rate); every utterance jitters them
a little (`JITTER`).
"""

from __future__ import annotations

import numpy as np

SPLITS = ("train", "valid", "test")

# Variant files live in espeak-ng-data/voices/!v. Families group variants that share a
# template (same author, same formant recipe): a held-out split must not hear a close
# relative of a training voice. Left out on purpose, because they are hard to understand
# or are effects rather than voices: whisper, whisperf, caleb (unvoiced: breath only);
# croak, Demonic, Tweaky, zac, announcer, grandma (extreme pitch, flutter or roughness);
# robosoft*, UniRobot, anikaRobot, RicishayMax* (robot effects, long echoes); fast (a rate
# test, not a voice); boris, kaukovalta, victor, Storm (formants scaled by 40-60 %);
# aunty (a copy of f4's formant recipe, so not "unheard"); the files written as long
# commented templates (ian, john, norbert, pablo, "Mr serious"), which were not checked.
VOICE_FAMILIES = {
    "train": {
        "espeak-male": ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8"],
        "espeak-female": ["f1", "f2", "f3", "f4", "f5"],
        "pt-template": ["Diogo", "Hugo", "michel", "anika"],
        "klatt-people": ["adam", "benjamin", "david", "edward"],
        "iven": ["iven", "iven3"],
        "mario": ["Mario", "gustave", "marcelo"],
        "misc": [
            "Alex",
            "Andy",
            "Annie",
            "Andrea",
            "Alicia",
            "Denis",
            "antonio",
            "max",
            "paul",
            "travis",
            "Gene",
            "grandpa",
            "Mike",
            "pedro",
            "ed",
            "Jacky",
        ],
    },
    # Held out: the rob/robert/quincy template and the linda/belinda template.
    "valid": {"rob": ["rob", "robert", "quincy"], "linda": ["linda", "belinda"]},
    # Held out: the plain Klatt synthesiser modes 1-4 (training only hears Klatt voices
    # with reshaped formants) and the steph family (female, spectrally tilted).
    "test": {
        "klatt": ["klatt", "klatt2", "klatt3", "klatt4"],
        "steph": ["steph", "steph2", "steph3"],
    },
}
SPEAKERS_PER_VARIANT = {"train": 3, "valid": 2, "test": 2}
# Speaker = variant x (pitch, range, rate); eSpeak's 50 means the voice's own default.
PITCH_RANGE, RANGE_RANGE, RATE_RANGE = (35, 65), (30, 80), (145, 200)
JITTER = {"pitch": 4, "range": 6, "rate": 0.06}  # per utterance: +-abs, +-abs, +-fraction


def speakers_for_split(split: str, seed: int) -> list[dict]:
    """The speakers of one split: every variant of its families x a few (pitch, range, rate)."""
    rng = np.random.default_rng([seed, 7, SPLITS.index(split)])
    speakers = []
    for family, variants in VOICE_FAMILIES[split].items():
        for variant in variants:
            for k in range(SPEAKERS_PER_VARIANT[split]):
                speakers.append(
                    {
                        "id": f"{variant}-{k}",
                        "family": family,
                        "variant": variant,
                        "pitch": int(rng.integers(*PITCH_RANGE, endpoint=True)),
                        "range": int(rng.integers(*RANGE_RANGE, endpoint=True)),
                        "rate": int(rng.integers(*RATE_RANGE, endpoint=True)),
                    }
                )
    return speakers


def missing_variants(available: set[str]) -> list[str]:
    """The variants of VOICE_FAMILIES not among the `available` variant file names."""
    return [
        v
        for fams in VOICE_FAMILIES.values()
        for vs in fams.values()
        for v in vs
        if v not in available
    ]
