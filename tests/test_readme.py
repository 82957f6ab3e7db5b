"""Every Python snippet of the README runs as written, and what it shows is true."""

import re
from pathlib import Path

import numpy as np

import pnref

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_snippets_run_in_order_and_agree():
    names: dict = {}
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert len(blocks) >= 2
    for code in blocks:
        exec(code, names)
    # Official estimator at initialization (shared/README.md section 2): 0.398451 and 0.338035,
    # published to six digits; the exact Normal(0, 1) values 1/sqrt(2 pi) and
    # 1/2 - 1/(2 pi) (ReLU of a standard normal: E2 = 1/2).
    np.testing.assert_allclose(names["mean"], 0.398451, atol=5e-7)
    np.testing.assert_allclose(names["var"], 0.338035, atol=5e-7)
    # Closed forms at m/s = 0 in float64 against ours: a few ulp (rtol 1e-15).
    np.testing.assert_allclose(names["exact_mean"], 1 / np.sqrt(2 * np.pi), rtol=1e-15)
    np.testing.assert_allclose(names["exact_var"], 0.5 - 1 / (2 * np.pi), rtol=1e-15)
    dy_out, dgamma, dbeta, dgamma_tilde, dbeta_tilde = names["grads"]
    assert dgamma_tilde is None and dbeta_tilde is None
    assert dy_out.shape == names["y"].shape
    # The fused kernel agrees with the NumPy reference (issue 5's float64 bound, 1e-13).
    reference = pnref.norm_pn_act(names["x"], names["gamma"], names["beta"], np.zeros(16),
                                  np.zeros(16), norm="gn", groups=4, backend="numpy")
    error = np.linalg.norm(names["fused"] - reference) / np.linalg.norm(reference)
    assert error <= 1e-13
