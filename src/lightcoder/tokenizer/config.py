"""The tokenizer stage's config: `TokenizerConfig`, validated on construction (train.py trains with it).

Pure dataclass; `import lightcoder.config` loads it without the `tokenizers` library.

Example: TokenizerConfig(vocab_size=16384, max_train_chars=50_000_000)
"""

from __future__ import annotations

from dataclasses import dataclass

from lightcoder.tokenizer.special_tokens import SPECIAL_TOKENS

MIN_VOCAB = len(SPECIAL_TOKENS) + 256 + 1  # specials + byte alphabet + at least one merge


@dataclass(kw_only=True)
class TokenizerConfig:
    vocab_size: int = 8192  # including the 11 special tokens and the 256 byte symbols
    min_frequency: int = 2  # a pair must occur this often to be merged
    max_train_chars: int = 0  # train on at most this many characters of the train split; 0 = all
    # True: a punctuation run takes its trailing newlines ("):\n" is one token); False: a newline never shares
    # a token with code, so every line end is a token boundary, as it is where a FIM middle ends (train.py)
    glue_newlines: bool = True

    def __post_init__(self) -> None:
        if self.vocab_size < MIN_VOCAB:
            raise ValueError(f"tokenizer.vocab_size must be >= {MIN_VOCAB} (11 specials + 256 bytes + "
                             f"1 merge), got {self.vocab_size}")
        if self.min_frequency < 1:
            raise ValueError(f"tokenizer.min_frequency must be >= 1, got {self.min_frequency}")
        if self.max_train_chars < 0:
            raise ValueError(f"tokenizer.max_train_chars must be >= 0 (0 = no limit), got {self.max_train_chars}")
