"""python -m analysis.prompts: soft prompts read back as their nearest vocabulary tokens."""

import json
from pathlib import Path

import pytest
import torch

from analysis.prompts import main, neighbours
from bench.launch import launch
from tests.conftest import tiny_bert
from tests.test_kept import TRAINED


def test_neighbours_are_by_cosine_not_by_length():
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0], [10.0, 9.0], [-1.0, 0.2]])
    similarity, ids = neighbours(torch.tensor([[3.0, 0.1], [-0.9, -0.1]]), embeddings, 2)
    assert ids.tolist() == [[0, 2], [3, 1]]  # [10, 9] is the longest but 40 degrees off [3, 0.1]
    assert similarity[0, 0] == pytest.approx(3.0 / (3.0**2 + 0.01) ** 0.5)


@pytest.mark.slow  # three tiny runs
def test_a_prompt_started_from_the_label_words_reads_back_as_them(tmp_path, make_config, tiny_models, capsys):
    for init in (["method.init=random"], ["method.init=vocab"], ["method.init=text", "method.init_text=negative"]):
        overrides = [*TRAINED, "method.lr=1e-6", "method=prompt_tuning", "method.num_virtual_tokens=4", *init]
        rec = launch(make_config(*tiny_bert(tiny_models), *overrides, "sweep_name=pw"))
        assert rec.status == "ok", rec.error
    assert main(["--results", str(tmp_path / "results"), "--sweep", "pw", "--top", "1"]) == 0
    out = capsys.readouterr().out
    # barely trained, the prompt is still "negative" as the tiny tokenizer splits it: ne gat ive ne, the first
    # token of the label word at two of the four
    assert "| text (negative) | 1 | 50.0 |" in out
    kept = [json.loads(p.read_text()) for p in Path(tmp_path / "results" / "pw").glob("*/neighbours.json")]
    assert sorted(k["init"] for k in kept) == ["random", "text", "vocab"]
    assert all(len(k["neighbours"]) == 4 and len(k["neighbours"][0]) == 1 for k in kept)
