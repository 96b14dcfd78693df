"""How a prompt fills the tokenizer's slots: start token, words, end token, padding.

Stable Diffusion always encodes `tokenizer.model_max_length` slots (77 for
CLIP; Flux's T5 takes 512); a longer prompt is cut, and the part that was
dropped is reported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sdviz.messages import text


def shown(token: str) -> str:
    """A token as a reader sees it: without CLIP's end-of-word marker or T5's start-of-word one."""
    return token.replace("</w>", "").replace("\u2581", "")


@dataclass(frozen=True)
class TokenSlot:
    slot: int  # position in the text encoder's input, from 0
    id: int
    token: str  # as the tokenizer spells it, e.g. 'circle</w>' (CLIP) or '▁circle' (T5)
    kind: str  # start, word, end or padding

    @property
    def text(self) -> str:
        """The token without CLIP's end-of-word or T5's start-of-word marker."""
        return shown(self.token)


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
    def from_dict(cls, data: dict) -> TokenView:
        return cls([TokenSlot(**s) for s in data["slots"]], data["dropped"])


def token_view(tokenizer, prompt: str, window: int | None = None) -> TokenView:
    """The slots as the pipeline fills them (padding to the window, default the tokenizer's, truncation on).

    CLIP's tokenizer starts with a start token; T5's has none and ends with its end token alone.
    """
    window = window or tokenizer.model_max_length
    ids = tokenizer(prompt, padding="max_length", max_length=window, truncation=True).input_ids
    full = tokenizer(prompt, truncation=False, verbose=False).input_ids
    starts = int(tokenizer.bos_token_id is not None and bool(full) and full[0] == tokenizer.bos_token_id)
    content = full[starts:-1]  # without start and end tokens
    kept = window - starts - 1
    dropped = tokenizer.decode(content[kept:]).strip() if len(content) > kept else ""
    tokens = tokenizer.convert_ids_to_tokens(ids)
    n_words = min(len(content), kept)
    slots = []
    for slot, (token_id, token) in enumerate(zip(ids, tokens)):
        if slot < starts:
            kind = "start"
        elif slot < starts + n_words:
            kind = "word"
        elif slot == starts + n_words:
            kind = "end"
        else:
            kind = "padding"
        slots.append(TokenSlot(slot, int(token_id), token, kind))
    return TokenView(slots, dropped)


def truncation_warning(view: TokenView, window: int) -> str | None:
    if not view.dropped:
        return None
    last = view.words[-1].text if view.words else ""
    return text("warning.truncated", window=window, last=repr(last), dropped=repr(view.dropped))
