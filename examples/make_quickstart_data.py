"""Make the quick start's data: reverse the letters of a made-up word.

A task a 135M-parameter model cannot do out of the box (it scores 0%) and learns from a few hundred examples
in about a minute of LoRA on two CPU cores. The test words never appear in training, so the evaluation
measures a learned skill, not memorised answers.

    python examples/make_quickstart_data.py     # rewrites examples/data/reverse/{train,test}.jsonl
"""

from __future__ import annotations

import json
import random
from pathlib import Path

CONSONANTS = "bcdfghjklmnprstvwz"
VOWELS = "aeiou"
OUT = Path(__file__).parent / "data" / "reverse"


def made_up_word(rng: random.Random) -> str:
    """A pronounceable non-word of 4 to 6 letters, such as 'dakemo'."""
    length = rng.randint(4, 6)
    return "".join(rng.choice(CONSONANTS if i % 2 == 0 else VOWELS) for i in range(length))


def example(word: str) -> dict:
    return {
        "messages": [
            {"role": "user", "content": "Reverse: " + " ".join(word)},
            {"role": "assistant", "content": "Reversed: " + " ".join(reversed(word))},
        ]
    }


def main(n_train: int = 400, n_test: int = 50, seed: int = 7) -> None:
    rng = random.Random(seed)
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < n_train + n_test:
        w = made_up_word(rng)
        if w not in seen and w != w[::-1]:
            seen.add(w)
            words.append(w)
    OUT.mkdir(parents=True, exist_ok=True)
    for name, chunk in (("train", words[:n_train]), ("test", words[n_train:])):
        with (OUT / f"{name}.jsonl").open("w", encoding="utf-8", newline="\n") as fh:
            for w in chunk:
                fh.write(json.dumps(example(w)) + "\n")
    print(f"wrote {n_train} training and {n_test} test examples to {OUT}")


if __name__ == "__main__":
    main()
