"""How a prompt fills the tokenizer's slots: start token, words, end token, padding.

Stable Diffusion always encodes `tokenizer.model_max_length` slots (77 for
CLIP); a longer prompt is cut, and the part that was dropped is reported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class TokenSlot:
    slot: int  # position in the text encoder's input, from 0
    id: int
    token: str  # as the tokenizer spells it, e.g. 'circle</w>'
    kind: str  # start, word, end or padding

    @property
    def text(self) -> str:
        """The token without CLIP's end-of-word marker."""
        return self.token.replace("</w>", "")


@dataclass(frozen=True)
class TokenView:
    slots: list[TokenSlot]
    dropped: str  # the text beyond the window, '' when the prompt fits

    @property
    def words(self) -> list[TokenSlot]:
        return [s for s in self.slots if s.kind == "word"]

    def to_dict(self) -> dict:
        return {"slots": [asdict(s) for s in self.slots], "dropped": self.dropped}

    @classmethod
    def from_dict(cls, data: dict) -> "TokenView":
        return cls([TokenSlot(**s) for s in data["slots"]], data["dropped"])


def token_view(tokenizer, prompt: str) -> TokenView:
    """The slots as the pipeline fills them (padding to the window, truncation on)."""
    window = tokenizer.model_max_length
    ids = tokenizer(prompt, padding="max_length", max_length=window, truncation=True).input_ids
    full = tokenizer(prompt, truncation=False, verbose=False).input_ids
    content = full[1:-1]  # without start and end tokens
    kept = window - 2
    dropped = tokenizer.decode(content[kept:]).strip() if len(content) > kept else ""
    tokens = tokenizer.convert_ids_to_tokens(ids)
    n_words = min(len(content), kept)
    slots = []
    for slot, (token_id, token) in enumerate(zip(ids, tokens)):
        if slot == 0:
            kind = "start"
        elif slot <= n_words:
            kind = "word"
        elif slot == n_words + 1:
            kind = "end"
        else:
            kind = "padding"
        slots.append(TokenSlot(slot, int(token_id), token, kind))
    return TokenView(slots, dropped)


def truncation_warning(view: TokenView, window: int) -> str | None:
    if not view.dropped:
        return None
    last = view.words[-1].text if view.words else ""
    return (
        f"prompt is longer than the tokenizer's window of {window} tokens; "
        f"it was cut after {last!r}, dropping: {view.dropped!r}"
    )
