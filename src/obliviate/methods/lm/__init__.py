"""Loss-based LM unlearning methods."""

from obliviate.methods.lm import (  # noqa: F401
    ce_u,
    dpo,
    grad_ascent,
    grad_diff,
    mean_teacher,
    nlul,
    npo,
    pdu,
    rmu,
    satimp,
    undial,
    wga,
)
