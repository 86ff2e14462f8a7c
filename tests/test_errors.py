"""snnconv.errors: the shared threshold checks."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snnconv.errors import all_positive, count_not_positive

VALUES = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.sampled_from([0.0, -0.0, 1e-45]))


@settings(max_examples=300, deadline=None)
@given(st.lists(VALUES, min_size=0, max_size=12), st.sampled_from([torch.float32, torch.float64]), st.booleans())
def test_all_positive_agrees_with_the_count(values, dtype, scalar):
    """The one-reduction check ``simulate`` runs on every call equals counting NaN, ±Inf and values <= 0."""
    t = torch.tensor(values[:1] if scalar and values else values, dtype=dtype)
    if scalar and values:
        t = t[0]
    assert all_positive(t) == (count_not_positive(t) == 0)
