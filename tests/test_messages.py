"""The message catalogue: every key in every language, with the same placeholders; the language a browser asks
for; and a sentence the server writes, in the language of the session that asked."""

from __future__ import annotations

import re

import pytest

from sdviz.messages import DEFAULT, LANGUAGES, catalogue, language_of, placeholders, speaking, text

HAN = re.compile(r"[\u4e00-\u9fff]")
KANA = re.compile(r"[\u3040-\u30ff]")


@pytest.mark.parametrize("language", [code for code in LANGUAGES if code != DEFAULT])
def test_every_key_is_translated_with_the_same_placeholders(language):
    english, translated = catalogue(DEFAULT), catalogue(language)
    assert sorted(set(english) - set(translated)) == [], "keys missing"
    assert sorted(set(translated) - set(english)) == [], "keys English does not have"
    for key, message in english.items():
        assert placeholders(translated[key]) == placeholders(message), key
        text(key, language, **{name: 1 for name in placeholders(message)})  # every message formats
    script = HAN if language == "zh" else re.compile(f"{HAN.pattern}|{KANA.pattern}")  # kanji or kana
    written = [key for key, message in translated.items() if re.search(r"[A-Za-z]{3,}", message) and
               not script.search(message) and message != english[key]]
    untranslated = [key for key, message in translated.items() if message == english[key] and message.strip()
                    and re.search(r"[a-z]{4,}", message) and not re.fullmatch(r"[{}\w.]*", message)]
    assert untranslated == [], "left in English"
    assert written == [], "no Chinese or Japanese in them"


def test_the_browsers_language_picks_the_catalogue():
    assert language_of("zh-CN,zh;q=0.9,en;q=0.8") == "zh"
    assert language_of("ja") == language_of("ja-JP,en-US;q=0.5") == "ja"
    assert language_of("en-US,en;q=0.9,ja;q=0.8") == "en"
    assert language_of("fr-FR, ja;q=0.4") == "ja" and language_of("de") == language_of(None) == "en"
    assert language_of("en;q=0.2, zh-TW;q=0.9") == "zh"
    with speaking("ja"):
        assert text("run.generate") == "生成" and KANA.search(text("status.step", done=1, total=2, timestep=1,
                                                                        sigma=1, ms=1))
    assert text("run.stop") == "Stop"
