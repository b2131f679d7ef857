"""The shipped universal alignment model (builtin:align) on long synthetic recordings whose line
boundaries are known (the issue's bounds: median error at most 50 ms, 95th percentile 200 ms;
``bench/align_accuracy.py`` measures 10-minute files)."""

import numpy as np
import pytest

import polyspeech
from polyspeech.audio import SAMPLE_RATE
from polyspeech.data.longform import long_recording


def test_long_recording_knows_where_its_lines_are():
    samples, lines, truth = long_recording("eng", 0.5, 10, seed=3)
    assert len(lines) == len(truth) >= 5
    assert np.all(truth[:, 0] < truth[:, 1]) and np.all(truth[1:, 0] > truth[:-1, 1])
    assert truth[0, 0] >= 10 and truth[-1, 1] <= len(samples) / SAMPLE_RATE
    quiet = samples[
        int((truth[0, 1] + 0.05) * SAMPLE_RATE) : int((truth[1, 0] - 0.05) * SAMPLE_RATE)
    ]
    speech = samples[int(truth[0, 0] * SAMPLE_RATE) : int(truth[0, 1] * SAMPLE_RATE)]
    assert np.sqrt(np.mean(quiet**2)) < 0.1 * np.sqrt(np.mean(speech**2))


@pytest.mark.parametrize(("lang", "prefix"), [("eng", 0), ("rus", 0), ("cmn", 20)])
def test_builtin_align_finds_line_boundaries_within_the_bounds(lang, prefix):
    samples, lines, truth = long_recording(lang, 2.0, prefix, seed=1)
    result = polyspeech.align(samples, lines, lang, granularity="line", star=prefix > 0)
    found = np.array([(span.start, span.end) for span in result.line_spans])
    errors = np.abs(found - truth).ravel()
    assert np.median(errors) <= 0.05 and np.percentile(errors, 95) <= 0.2
    assert [span.text for span in result.line_spans] == lines and not result.unmapped
