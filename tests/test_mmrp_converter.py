"""``formatting: mede2_judged``: pairs built when LLaMA-Factory loads a judged file, policy from the entry."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from mmrp_helpers import (
    candidate,
    judged_row,
    make_image,
    prescreened_negative,
    verdict,
)

from mede2_plugin.core.jsonl import write_jsonl
from mede2_plugin.mmrp.pairs import PairingPolicy, build_pairs

pytest.importorskip("llamafactory", reason="the mede2_judged format is a LLaMA-Factory converter")

import llamafactory.data  # noqa: F401 - LLaMA-Factory first, as in llamafactory-cli

from mede2_plugin.llamafactory_ext.judged import (
    FORMAT_NAME,
    JudgedDatasetError,
    MedE2JudgedConverter,
    row_expansion_active,
)


def _rows(image: str) -> list[dict]:
    return [
        judged_row("q1", [candidate(0, verdict()), candidate(1, verdict()), candidate(2, verdict()),
                          candidate(3, verdict(Logical_Consistency=False)), prescreened_negative(4),
                          candidate(5, None)], images=[image]),
        judged_row("q2", [candidate(0, verdict()), candidate(1, verdict(Reflection_Presence=False)),
                          candidate(2, verdict(Answer_Correctness=False, No_Hallucination=False))], images=[image]),
        judged_row("q3", [candidate(0, verdict()), candidate(1, verdict())], images=[image]),  # no negative
    ]


@pytest.fixture()
def dataset_dir(tmp_path):
    image = make_image(tmp_path / "media" / "scan.png")
    write_jsonl(tmp_path / "data" / "judged.jsonl", _rows(image))
    return tmp_path / "data"


def _write_info(dataset_dir, entries: dict) -> None:
    info = {name: {"file_name": "judged.jsonl", "formatting": FORMAT_NAME, "ranking": True, **extra}
            for name, extra in entries.items()}
    (dataset_dir / "dataset_info.json").write_text(json.dumps(info))


def _aligned(dataset_dir, names: str, tmp_path):
    """LLaMA-Factory's own loading path up to the aligned (pre-tokenisation) dataset."""
    from llamafactory.data.loader import _get_merged_dataset
    from llamafactory.hparams import DataArguments

    data_args = DataArguments(dataset=names, dataset_dir=str(dataset_dir), overwrite_cache=True)
    model_args = SimpleNamespace(cache_dir=str(tmp_path / "hf_cache"), hf_hub_token=None)
    training_args = SimpleNamespace(local_process_index=0, seed=42)
    return _get_merged_dataset(data_args.dataset, model_args, data_args, training_args, stage="rm")


def test_the_loader_uses_the_row_expansion():
    assert row_expansion_active()


@pytest.mark.parametrize("policy", [
    {},
    {"positive_use": "all"},
    {"positive_use": "all", "pairs_per_question": 2, "seed": 5},
    {"positive_use": "once", "prefer_hard_negatives": False, "seed": 1},
])
def test_pairs_follow_the_policy_in_the_entry(dataset_dir, tmp_path, policy):
    _write_info(dataset_dir, {"mede2_stage2_judged": {"mede2_pairing": policy}})
    aligned = _aligned(dataset_dir, "mede2_stage2_judged", tmp_path)
    expected, _ = build_pairs([json.loads(x) for x in (dataset_dir / "judged.jsonl").read_text().splitlines()],
                              PairingPolicy.from_dict(policy))
    assert len(aligned) == len(expected) > 0
    for row, pair in zip(aligned, expected):
        assert row["_prompt"] == [{"role": "user", "content": "<image>" + pair["prompt"]}]
        assert [m["content"] for m in row["_response"]] == [pair["chosen"], pair["rejected"]]
        assert row["_system"] == "SYSTEM"
        assert row["_images"] == pair["images"]


def test_changing_the_policy_changes_the_pairs_without_touching_the_file(dataset_dir, tmp_path):
    before = (dataset_dir / "judged.jsonl").read_bytes()
    counts = {}
    for use in ("once", "all"):
        _write_info(dataset_dir, {"mede2_stage2_judged": {"mede2_pairing": {"positive_use": use}}})
        counts[use] = len(_aligned(dataset_dir, "mede2_stage2_judged", tmp_path))
    assert counts == {"once": 3 + 1, "all": 3 * 2 + 1 * 2}
    assert (dataset_dir / "judged.jsonl").read_bytes() == before


def test_two_entries_with_different_policies_on_one_file_are_an_error(dataset_dir, tmp_path):
    _write_info(dataset_dir, {"a": {"mede2_pairing": {"positive_use": "once"}},
                              "b": {"mede2_pairing": {"positive_use": "all"}}})
    with pytest.raises(JudgedDatasetError, match="same judged file with different mede2_pairing"):
        _aligned(dataset_dir, "a,b", tmp_path)


def test_bad_policy_and_missing_ranking_are_reported(dataset_dir, tmp_path):
    _write_info(dataset_dir, {"x": {"mede2_pairing": {"cap": 3}}})
    with pytest.raises(ValueError, match="entry 'x'.*unknown key"):
        _aligned(dataset_dir, "x", tmp_path)
    _write_info(dataset_dir, {"x": {"ranking": False}})
    with pytest.raises(ValueError, match="not applicable|ranking"):
        _aligned(dataset_dir, "x", tmp_path)


def test_no_pair_at_all_is_a_clear_error(tmp_path):
    data = tmp_path / "data"
    write_jsonl(data / "judged.jsonl", [judged_row("q", [candidate(0, verdict()), candidate(1, None)], images=[])])
    _write_info(data, {"x": {}})
    with pytest.raises(JudgedDatasetError, match="no preference pair"):
        _aligned(data, "x", tmp_path)


def test_without_the_expansion_the_converter_gives_one_pair_per_question(dataset_dir):
    from llamafactory.data.parser import DatasetAttr
    from llamafactory.hparams import DataArguments

    _write_info(dataset_dir, {"x": {"mede2_pairing": {"positive_use": "all", "seed": 2}}})
    attr = DatasetAttr("file", dataset_name="judged.jsonl", formatting=FORMAT_NAME, ranking=True)
    converter = MedE2JudgedConverter(attr, DataArguments(dataset="x", dataset_dir=str(dataset_dir)))
    rows = [json.loads(x) for x in (dataset_dir / "judged.jsonl").read_text().splitlines()]
    expected, _ = build_pairs(rows, PairingPolicy(positive_use="all", seed=2))
    first = converter(rows[0])
    assert [m["content"] for m in first["_response"]] == [expected[0]["chosen"], expected[0]["rejected"]]
    assert converter(rows[2])["_response"] == []  # no negative: LLaMA-Factory drops the row


@pytest.mark.slow
def test_tokenised_dynamic_dataset_with_the_tiny_model(dataset_dir, tmp_path, tiny_model_dir):
    """The full ``get_dataset`` path (template, processor, pairwise processor) on the judged file."""
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    _write_info(dataset_dir, {"mede2_stage2_judged": {"mede2_pairing": {"positive_use": "all",
                                                                        "pairs_per_question": 3}}})
    model_args, data_args, training_args, _, _ = get_train_args({
        "model_name_or_path": str(tiny_model_dir), "stage": "dpo", "do_train": True, "finetuning_type": "full",
        "dataset": "mede2_stage2_judged", "dataset_dir": str(dataset_dir), "template": "mede2_qwen2_vl",
        "cutoff_len": 1024, "image_max_pixels": 12544, "output_dir": str(tmp_path / "out"),
        "overwrite_cache": True, "report_to": "none", "preprocessing_num_workers": 1,
    })
    tokenizer_module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
    module = get_dataset(template, model_args, data_args, training_args, stage="rm", **tokenizer_module)
    train = module["train_dataset"]
    assert len(train) == 3 + 2  # q1: 3 positives x 2 negatives capped at 3; q2: 1 x 2; q3: none
    image_pad = tokenizer_module["tokenizer"].convert_tokens_to_ids("<|image_pad|>")
    assert all(image_pad in ids for ids in train["chosen_input_ids"])
    assert all(len(images) == 1 for images in train["images"])


HOOKED = (
    "import mede2_plugin.llamafactory_ext as ext\n"
    "original = ext.register_converters\n"
    "def register():\n"
    "    original()\n"
    "    import mede2_plugin.llamafactory_ext.judged\n"
    "ext.register_converters = register\n"
)
CHECK = (
    "import llamafactory.data.loader as loader\n"
    "from llamafactory.data.converter import DATASET_CONVERTERS\n"
    "from mede2_plugin.llamafactory_ext.judged import MedE2JudgedConverter\n"
    "assert hasattr(loader.align_dataset, '__mede2_wrapped__'), loader.align_dataset\n"
    "assert DATASET_CONVERTERS['mede2_judged'] is MedE2JudgedConverter\n"
    "print('registered and wrapped')\n"
)


@pytest.mark.parametrize("first_import", [
    "import llamafactory.data.loader\n",         # LLaMA-Factory first: wrapped before the loader binds it
    "import mede2_plugin.llamafactory_ext.judged\n",     # this module first: inside the import cycle
])
def test_registration_from_the_import_hook_in_either_import_order(first_import):
    """As it runs once MedE2's import hook imports this module (simulated by patching the hook)."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", HOOKED + first_import + CHECK], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("registered and wrapped")


def test_importing_the_module_alone_registers_it():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", "import mede2_plugin.llamafactory_ext.judged\n" + CHECK],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]


def test_static_native_and_sharegpt_files_load_to_the_same_pairs(dataset_dir, tmp_path):
    """``mede2 pairs`` output through LLaMA-Factory: mede2_pref, sharegpt ranking and mede2_judged agree."""
    from mede2_plugin.mmrp.pairs import write_preference_dataset

    policy = PairingPolicy(positive_use="all", pairs_per_question=2, seed=4)
    out = tmp_path / "out"
    report = write_preference_dataset(dataset_dir / "judged.jsonl", out, policy)
    loaded = {name: _aligned(out, name, tmp_path) for name in ("mede2_stage2", "mede2_stage2_sharegpt",
                                                               "mede2_stage2_judged")}
    assert {len(d) for d in loaded.values()} == {report.pairs}
    keys = ("_prompt", "_response", "_system", "_images")
    native, sharegpt, judged = ([{k: row[k] for k in keys} for row in d] for d in loaded.values())
    assert native == sharegpt == judged
