"""python -m analysis.delta_w: the rank of weight updates (LoRA paper, section 7), on hand-made matrices and on the
kept folders of tiny runs."""

import re

import pytest
import torch

from analysis.delta_w import amplification, energy_share, main, subspace_similarity
from bench.launch import launch
from tests.conftest import tiny_bert
from tests.test_kept import TRAINED


def _orthonormal(rows: int, cols: int, seed: int) -> torch.Tensor:
    return torch.linalg.qr(
        torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    ).Q


def test_subspace_similarity_is_one_for_shared_directions_and_zero_for_orthogonal_ones():
    basis = _orthonormal(32, 8, 0)  # eight orthonormal directions of a 32-dimensional input space
    left = _orthonormal(16, 8, 1)
    a = left[:, :4] @ torch.diag(torch.tensor([4.0, 3, 2, 1], dtype=torch.float64)) @ basis[:, :4].T
    b = left[:, :2] @ torch.diag(torch.tensor([5.0, 1], dtype=torch.float64)) @ basis[:, [0, 4]].T  # one shared
    phi = subspace_similarity(a, a, 4, 4)
    assert torch.allclose(torch.diagonal(phi), torch.ones(4, dtype=torch.float64))
    phi = subspace_similarity(a, b, 4, 2)
    assert phi[0, 0] == pytest.approx(1.0)  # the top direction of each is basis 0
    assert phi[0, 1] == pytest.approx(1.0)  # a's top direction lies in b's top two
    assert phi[1, 1] == pytest.approx(0.5)  # of a's top two (basis 0, 1) and b's (0, 4): one of two shared
    assert phi[3, 1] == pytest.approx(0.5)


def test_energy_of_a_rank_two_update_is_all_in_its_top_two_directions():
    u, v = _orthonormal(16, 2, 2), _orthonormal(24, 2, 3)
    delta = u @ torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64)) @ v.T
    shares = energy_share(delta, ranks=(1, 2, 4))
    assert shares == {1: pytest.approx(0.9), 2: pytest.approx(1.0), 4: pytest.approx(1.0)}  # 9 / (9 + 1)


def test_amplification_of_an_update_along_the_weights_own_directions_is_its_norm_over_theirs():
    u, v = _orthonormal(16, 16, 4), _orthonormal(16, 16, 5)
    w0 = u @ torch.diag(torch.arange(16, 0, -1, dtype=torch.float64)) @ v.T  # singular values 16..1
    delta = 0.5 * u[:, :1] @ v[:, :1].T  # along W_0's top direction
    found = amplification(delta, w0, 1)
    assert found["dW"] == pytest.approx(0.5) and found["W0 on dW's"] == pytest.approx(16.0)
    assert found["W0 on its own"] == pytest.approx(16.0) and found["factor"] == pytest.approx(0.5 / 16)
    assert found["W0 on random"] < 16.0


@pytest.mark.slow  # four tiny runs
def test_the_command_reads_kept_adapters_and_a_full_copy(tmp_path, make_config, tiny_models, capsys):
    for overrides in (
        ["method=lora", "method.r=2", "seed=0"],
        ["method=lora", "method.r=2", "seed=1"],
        ["method=lora", "method.r=4", "seed=0"],
        ["method=full_ft", "keep_full_copies=true"],
    ):
        rec = launch(make_config(*tiny_bert(tiny_models), *TRAINED, "sweep_name=dw", *overrides))
        assert rec.status == "ok", rec.error
    assert main(["--results", str(tmp_path / "results"), "--sweep", "dw"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"φ\(i, j\), rank against rank: \S+ \(r=2, seed 0\) against \S+ \(r=4, seed 0\)", out)
    assert re.search(r"φ\(i, j\), seed against seed: \S+ \(r=2, seed 0\) against \S+ \(r=2, seed 1\)", out)
    folder = tmp_path / "results" / "report" / "dw" / "delta_w"
    energy = (folder / "energy.md").read_text()
    assert "full_ft" in energy and "Gaussian matrix" in energy
    assert {p.name for p in folder.glob("*.png")} == {"phi_0.png", "phi_1.png", "energy.png"}
