"""The teacher temperature schedule of DINO (official ``main_dino.py`` ``DINOLoss.teacher_temp_schedule``)."""

from __future__ import annotations


def teacher_temperature(epoch: int, *, warmup_temp: float, temp: float, warmup_epochs: int) -> float:
    """The teacher's softmax temperature in ``epoch`` (0-based): linear from ``warmup_temp`` to ``temp`` over the
    first ``warmup_epochs`` epochs, then ``temp`` (paper sec. 4.1 / appendix: 0.04 -> 0.07 over 30 epochs).

    Per epoch and with both ends included, as the official ``np.linspace(warmup_temp, temp, warmup_epochs)``:
    epoch ``warmup_epochs - 1`` already uses ``temp`` (a single warm-up epoch uses ``warmup_temp``).
    """
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    if warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
    if epoch >= warmup_epochs:
        return temp
    if warmup_epochs == 1:
        return warmup_temp
    return warmup_temp + (temp - warmup_temp) * epoch / (warmup_epochs - 1)
