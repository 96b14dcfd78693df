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
    def words(message: str) -> str:  # the message without its placeholders' names
        return re.sub(r"{\w+(?:[:!][^}]*)?}", "", message)

    written = [key for key, message in translated.items() if re.search(r"[A-Za-z]{3,}", words(message)) and
               not script.search(message) and message != english[key]]
    untranslated = [key for key, message in translated.items() if message == english[key]
                    and re.search(r"[a-z]{4,}", words(message))]
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


def test_text_drawn_into_images_has_a_glyph_for_every_character():
    """A sheet's labels in Chinese and Japanese with σ, ᾱ and ε: the font found has each character (none drawn as
    its .notdef box); Pillow's own font, which has no CJK, is refused for them."""
    import numpy as np

    from sdviz.drawing.fonts import _default, font_files, missing, text_font
    from sdviz.drawing.sheets import sheet

    labels = {"zh": "第 3 步之后的 x_t · 噪声 ᾱ 0.25 σ ε", "ja": "ステップ 3 後の x_t · ノイズ ᾱ 0.25 σ ε"}
    assert missing(_default(14), labels["zh"]) > 0  # what the sheets used before: boxes for every Han character
    if not any("CJK" in path.name for path in font_files()):
        pytest.skip("no CJK font on this machine (fonts-noto-cjk)")
    frame = np.zeros((16, 16, 3), np.uint8)
    for language, label in labels.items():
        with speaking(language):
            font = text_font(14, label)
            assert missing(font, label) == 0, (language, font.getname())
            assert ("SC" if language == "zh" else "JP") in " ".join(font.getname())
            drawn = sheet([(label, [(label, frame)])], title=label)
            assert drawn.width > 100


def test_the_files_speak_the_language_asked_for(tmp_path):
    """`render --lang ja --html` writes run.html in Japanese (its template's words and its script's), and
    `compare --lang zh` its page in Chinese; the English page keeps neither script."""
    from tests.helpers import sdviz_main

    for language, command, page in (("ja", "render", "run.html"), ("zh", "compare", "compare.html"),
                                    ("en", "render", "run.html")):
        out = tmp_path / language
        extra = ["--vary", "steps=2,3"] if command == "compare" else ["--steps", "2"]
        result = sdviz_main(command, "--prompt", "a red circle", *extra, "--lang", language, "--html", "--out",
                            str(out))
        assert result.returncode == 0, result.stderr
        written = (out / page).read_text()
        han, kana = len(HAN.findall(written)), len(KANA.findall(written))
        assert f'<html lang="{language}">' in written
        if language == "ja":
            assert kana > 100 and "ノイズから画像へ" in written and "From noise to image" not in written
        elif language == "zh":
            assert han > 30 and kana == 0 and "最终图像" in written and "Final images" not in written
        else:
            assert han == kana == 0 and "From noise to image" in written


def test_a_refusal_speaks_the_language_of_the_request():
    """The same bad value refused in each language, naming the parameter and what is allowed in it."""
    from sdviz import Settings
    from sdviz.sampling.checks import validate
    from sdviz.sampling.errors import InputError

    said = {}
    for language in LANGUAGES:
        with speaking(language), pytest.raises(InputError) as refused:
            validate(Settings(steps=0))
        said[language] = str(refused.value)
    assert said["en"] == "steps 0 is out of range; allowed: 1..1000"
    assert said["zh"].startswith("steps 0 ") and "允许" in said["zh"] and "1..1000" in said["zh"]
    assert said["ja"].startswith("steps 0 ") and KANA.search(said["ja"]) and "1..1000" in said["ja"]


def test_the_command_line_refuses_in_the_language_asked_for(tmp_path):
    from tests.helpers import sdviz_main

    refused = sdviz_main("render", "--steps", "2", "--lang", "zh", "--out", str(tmp_path / "run"))
    assert refused.returncode == 2 and "缺少 --prompt" in refused.stderr and "Traceback" not in refused.stderr
    refused = sdviz_main("render", "--prompt", "x", "--steps", "0", "--lang", "ja", "--out", str(tmp_path / "run"))
    assert refused.returncode == 2 and "steps 0 は範囲外です" in refused.stderr


def test_every_refusal_is_raised_from_the_catalogue():
    """No `InputError(...)` is built from its own words anywhere in sdviz/ or ui/: each refusal is
    `InputError.said(key, ...)`, so it has an entry in every language (errors.py's `said` builds the one)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    built = []
    for path in sorted([*root.glob("sdviz/**/*.py"), *root.glob("ui/**/*.py")]):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        allowed = set()
        if path.relative_to(root).as_posix() == "sdviz/sampling/errors.py":
            allowed = {id(node) for function in ast.walk(tree) if isinstance(function, ast.FunctionDef)
                       and function.name == "said" for node in ast.walk(function)}
        built += [f"{path.relative_to(root)}:{node.lineno}" for node in ast.walk(tree)
                  if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "InputError"
                  and id(node) not in allowed]
    assert built == [], "raise InputError.said(key, ...) with the message in the catalogue"


def test_refusals_of_each_layer_speak_chinese_and_japanese(tmp_path):
    """A saved run's field check, a LoRA of the wrong kind (its kind a word of the catalogue too), a model path
    that is not there, a fork's kept setting with its reason, and the app's attention flag: each refused in
    Chinese and Japanese, with no English sentence left in it (names, values and file names stay)."""
    import json
    from types import SimpleNamespace

    from sdviz.sampling.checks import check_kept
    from sdviz.sampling.errors import InputError
    from sdviz.sampling.loras import Lora
    from sdviz.sampling.models import check_source
    from sdviz.sampling.saved import FORMAT, read_run
    from sdviz.sampling.settings import RunSettings, Settings
    from ui.session import check_attention

    run = tmp_path / "run"
    run.mkdir()
    fields = ("format", "settings", "facts", "shapes", "tokens", "timings", "warnings", "complete", "steps")
    (run / "trajectory.json").write_text(json.dumps({**dict.fromkeys(fields, 3), "format": FORMAT}))
    (tmp_path / "adapter.txt").write_text("not weights")
    parent = SimpleNamespace(settings=RunSettings(scheduler="ddim", steps=4, width=64, height=64, model="m"))
    refusals = {
        "saved": lambda: read_run(run),  # trajectory.json: settings 3 is not an object
        "lora": lambda: Lora.parse(str(tmp_path / "adapter.txt")),
        "model": lambda: check_source(str(tmp_path / "missing-model")),
        "fork": lambda: check_kept(parent, Settings(scheduler="ddim", steps=4, width=64, height=64, seed=1)),
        "app": lambda: check_attention("yes"),
    }
    english_sentence = re.compile(r"[A-Za-z]+ [A-Za-z]+ [A-Za-z]+")
    said = {}
    for what, refuse in refusals.items():
        for language in LANGUAGES:
            with speaking(language), pytest.raises(InputError) as refused:
                refuse()
            said[what, language] = str(refused.value)
        assert english_sentence.search(said[what, "en"]), said[what, "en"]
        assert HAN.search(said[what, "zh"]) and not KANA.search(said[what, "zh"]), said[what, "zh"]
        assert KANA.search(said[what, "ja"]), said[what, "ja"]
        for language in ("zh", "ja"):
            assert not english_sentence.search(said[what, language]), said[what, language]
    assert said["saved", "en"].startswith("trajectory.json: settings 3 is not an object; allowed: an object with")
    assert said["fork", "en"].endswith("a fork keeps the parent's seed: the seed sets the noise the parent's steps "
                                       "were taken with")
    assert said["fork", "zh"].endswith("随机种子决定了原运行各步所用的噪声")  # the reason, in the sentence's language
    assert said["lora", "en"].endswith("is a .txt file; sdviz loads LoRAs from safetensors only")
    assert ".txt ファイル" in said["lora", "ja"] and "'yes'" in said["app", "zh"]
