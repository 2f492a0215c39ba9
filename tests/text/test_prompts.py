from __future__ import annotations

from inspector.config import PromptSpec
from inspector.text.prompts import DEFAULT_TEMPLATES, build_prompt_set, defect_phrase


def test_compositional_ensemble_sizes() -> None:
    spec = PromptSpec(normal_states=("flawless {}", "{}"), anomalous_states=("damaged {}",))
    ps = build_prompt_set("ring", spec)
    assert len(ps.normal) == 2 * len(DEFAULT_TEMPLATES)
    assert len(ps.anomalous) == len(DEFAULT_TEMPLATES)
    assert "a photo of a flawless ring." in ps.normal
    assert "a cropped photo of the damaged ring." in ps.anomalous


def test_defects_join_the_anomalous_ensemble() -> None:
    spec = PromptSpec(defects={"scratch": "a scratch on the rim"}, templates=("a photo of a {}.",))
    ps = build_prompt_set("ring", spec)
    assert ps.defects["scratch"] == ("a photo of a ring with a scratch on the rim.",)
    assert ps.defects["scratch"][0] in ps.anomalous
    assert ps.defect_names == ("scratch",)


def test_domain_templates_and_languages() -> None:
    spec = PromptSpec(templates=("a photo of a {}.",), domain_templates=("an X-ray image of a {}.",),
                      normal_states=("{}",), anomalous_states=("beschädigter {}",))
    ps = build_prompt_set("Ring", spec)
    assert ps.normal == ("a photo of a Ring.", "an X-ray image of a Ring.")
    assert "an X-ray image of a beschädigter Ring." in ps.anomalous


def test_defect_phrase_forms() -> None:
    assert defect_phrase("ring", "a scratch") == "ring with a scratch"
    assert defect_phrase("ring", "a ring with a dent.") == "a ring with a dent"
    assert defect_phrase("ring", "cracked {}") == "cracked ring"


def test_digest_depends_on_model_and_texts() -> None:
    a = build_prompt_set("ring", PromptSpec())
    b = build_prompt_set("washer", PromptSpec())
    assert a.digest("m1") != b.digest("m1")
    assert a.digest("m1") != a.digest("m2")
    assert a.digest("m1") == build_prompt_set("ring", PromptSpec()).digest("m1")
