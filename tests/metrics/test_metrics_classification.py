"""Classification metrics equal scikit-learn's, streamed over batches, merged and on edge cases."""

from __future__ import annotations

import itertools
import json
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning as SkUndefined

import llmkit
from llmkit.errors import UsageError
from llmkit.metrics.base import Score, UndefinedMetricWarning

SK_PRF = {"precision": skm.precision_score, "recall": skm.recall_score, "f1": skm.f1_score}
ZERO_DIVISIONS: list[Any] = [0, 1, "nan"]


def _sk_zero(zero_division: Any) -> Any:
    return np.nan if zero_division == "nan" else zero_division


def _quiet(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call scikit-learn with its warnings silenced (warnings are errors in this suite)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _same(ours: float, theirs: float) -> bool:
    return (np.isnan(ours) and np.isnan(theirs)) or ours == pytest.approx(theirs, abs=1e-12)


def _stream(metric: Any, preds: list[Any], golds: list[Any], cuts: list[int]) -> Any:
    """Feed the data in batches split at `cuts`."""
    bounds = [0, *sorted(c % (len(preds) + 1) for c in cuts), len(preds)]
    for lo, hi in itertools.pairwise(bounds):
        metric.update(preds[lo:hi], golds[lo:hi])
    return metric


label_lists = st.integers(1, 40).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 4), min_size=n, max_size=n),
        st.lists(st.integers(0, 4), min_size=n, max_size=n),
        st.lists(st.integers(0, 40), max_size=3),
    )
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=label_lists,
    name=st.sampled_from(sorted(SK_PRF)),
    average=st.sampled_from(["micro", "macro", "weighted"]),
    zero_division=st.sampled_from(ZERO_DIVISIONS),
)
def test_prf_equals_sklearn_on_random_labels(
    data: tuple[list[int], list[int], list[int]], name: str, average: str, zero_division: Any
) -> None:
    preds, golds, cuts = data
    metric = llmkit.create("metric", name, average=average, zero_division=zero_division)
    ours = float(_stream(metric, preds, golds, cuts).compute())
    theirs = _quiet(
        SK_PRF[name], golds, preds, average=average, zero_division=_sk_zero(zero_division)
    )
    assert _same(ours, theirs)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    preds=st.lists(st.sampled_from([0, 1]), min_size=1, max_size=30),
    golds_seed=st.integers(0, 2**16),
    name=st.sampled_from(sorted(SK_PRF)),
    zero_division=st.sampled_from(ZERO_DIVISIONS),
    pos_label=st.sampled_from([0, 1]),
)
def test_binary_equals_sklearn(
    preds: list[int], golds_seed: int, name: str, zero_division: Any, pos_label: int
) -> None:
    golds = np.random.default_rng(golds_seed).integers(0, 2, len(preds)).tolist()
    metric = llmkit.create(
        "metric", name, average="binary", pos_label=pos_label, zero_division=zero_division
    )
    metric.update(preds, golds)
    theirs = _quiet(
        SK_PRF[name],
        golds,
        preds,
        average="binary",
        pos_label=pos_label,
        zero_division=_sk_zero(zero_division),
    )
    assert _same(float(metric.compute()), theirs)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=label_lists)
def test_accuracy_and_confusion_matrix_equal_sklearn(
    data: tuple[list[int], list[int], list[int]],
) -> None:
    preds, golds, cuts = data
    acc = _stream(llmkit.create("metric", "accuracy"), preds, golds, cuts).compute()
    assert float(acc) == pytest.approx(skm.accuracy_score(golds, preds), abs=1e-15)
    cm = _stream(llmkit.create("metric", "confusion_matrix"), preds, golds, cuts).compute()
    assert cm.labels == sorted(set(preds) | set(golds))
    np.testing.assert_array_equal(cm.to_numpy(), _quiet(skm.confusion_matrix, golds, preds))
    for normalize in ("true", "pred", "all"):
        cmn = llmkit.create("metric", "confusion_matrix", normalize=normalize)
        cmn.update(preds, golds)
        np.testing.assert_allclose(
            cmn.compute().to_numpy(),
            _quiet(skm.confusion_matrix, golds, preds, normalize=normalize),
        )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=label_lists, name=st.sampled_from(sorted(SK_PRF)))
def test_merged_shards_equal_whole(data: tuple[list[int], list[int], list[int]], name: str) -> None:
    """Counts summed over shards (as DDP ranks would) give the result on all of the data."""
    preds, golds, cuts = data
    cut = cuts[0] % (len(preds) + 1) if cuts else len(preds) // 2
    whole = llmkit.create("metric", name, average="macro", zero_division=0)
    whole.update(preds, golds)
    a = llmkit.create("metric", name, average="macro", zero_division=0)
    b = llmkit.create("metric", name, average="macro", zero_division=0)
    a.update(preds[:cut], golds[:cut])
    b.update(preds[cut:], golds[cut:])
    a.merge(json.loads(json.dumps(b.state())))  # states travel as plain data
    assert float(a.compute()) == float(whole.compute())
    assert a.compute().details == whole.compute().details


def test_string_labels_per_class_and_weighted() -> None:
    golds = ["cat", "dog", "dog", "bird", "cat", "dog"]
    preds = ["cat", "dog", "cat", "bird", "bird", "dog"]
    f1 = llmkit.create("metric", "f1", average="weighted")
    f1.update(preds, golds)
    result = f1.compute()
    assert float(result) == pytest.approx(skm.f1_score(golds, preds, average="weighted"))
    per = result.details["per_class"]
    assert per["labels"] == ["bird", "cat", "dog"]
    assert per["f_score"] == pytest.approx(list(skm.f1_score(golds, preds, average=None)))
    assert per["support"] == [1, 2, 3]
    json.dumps(result.to_dict())


def test_scores_are_argmaxed_and_tensors_accepted() -> None:
    torch = pytest.importorskip("torch")
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.5, 1.0], [5.0, 1.0, 0.0]])
    targets = torch.tensor([0, 1, 1, 2])
    acc = llmkit.create("metric", "accuracy")
    acc.update(logits, targets)
    assert float(acc.compute()) == 0.5
    top2 = llmkit.create("metric", "accuracy", top_k=2)
    top2.update(logits.numpy(), targets.numpy())
    assert float(top2.compute()) == 0.75
    f1 = llmkit.create("metric", "f1", average="micro")
    f1.update(logits, targets)
    assert float(f1.compute()) == pytest.approx(0.5)


def test_ignore_index_skips_padding() -> None:
    acc = llmkit.create("metric", "accuracy", ignore_index=-100)
    acc.update([1, 2, 3, 0], [1, 2, -100, -100])
    assert float(acc.compute()) == 1.0
    assert acc.compute().details == {"correct": 2, "total": 2}


# -- edge cases ---------------------------------------------------------------------------------


def test_class_never_predicted_warns_like_sklearn() -> None:
    golds, preds = [0, 1, 2, 2], [0, 1, 1, 1]  # class 2 is never predicted
    f1 = llmkit.create("metric", "precision", average="macro")
    f1.update(preds, golds)
    with pytest.warns(UndefinedMetricWarning, match="precision is ill-defined"):
        ours = float(f1.compute())
    with pytest.warns(SkUndefined):
        theirs = skm.precision_score(golds, preds, average="macro")
    assert ours == pytest.approx(theirs)
    f1 = llmkit.create("metric", "precision", average="macro", zero_division=1)
    f1.update(preds, golds)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert float(f1.compute()) == pytest.approx(
            skm.precision_score(golds, preds, average="macro", zero_division=1)
        )


def test_warnings_match_sklearn_on_random_labels() -> None:
    """An UndefinedMetricWarning is raised exactly when scikit-learn raises one."""
    rng = np.random.default_rng(5)
    for _ in range(40):
        n = int(rng.integers(1, 8))
        golds, preds = rng.integers(0, 3, n).tolist(), rng.integers(0, 3, n).tolist()
        name = str(rng.choice(sorted(SK_PRF)))
        average = str(rng.choice(["binary", "micro", "macro", "weighted"]))
        if average == "binary" and len(set(golds) | set(preds)) > 2:
            continue
        with warnings.catch_warnings(record=True) as theirs:
            warnings.simplefilter("always")
            SK_PRF[name](golds, preds, average=average)
        m = llmkit.create("metric", name, average=average)
        m.update(preds, golds)
        with warnings.catch_warnings(record=True) as ours:
            warnings.simplefilter("always")
            m.compute()
        sk_warned = any(issubclass(w.category, SkUndefined) for w in theirs)
        assert bool(ours) == sk_warned, (name, average, golds, preds)


def test_nan_zero_division_is_left_out_of_macro_average() -> None:
    f1 = llmkit.create("metric", "precision", average="macro", zero_division="nan")
    f1.update([0, 0, 0], [0, 1, 1])  # class 1 never predicted -> nan, ignored by the mean
    assert float(f1.compute()) == pytest.approx(
        skm.precision_score([0, 1, 1], [0, 0, 0], average="macro", zero_division=np.nan)
    )
    assert f1.compute().details["per_class"]["precision"] == [pytest.approx(1 / 3), None]


@pytest.mark.parametrize("name", sorted(SK_PRF))
def test_single_class(name: str) -> None:
    for average in ("binary", "micro", "macro", "weighted"):
        for labels in ([1, 1, 1], [0, 0, 0], [7, 7]):
            m = llmkit.create("metric", name, average=average, zero_division=0)
            m.update(labels, labels)
            theirs = _quiet(SK_PRF[name], labels, labels, average=average, zero_division=0)
            assert float(m.compute()) == pytest.approx(theirs), (average, labels)


def test_labels_argument_includes_absent_class() -> None:
    golds, preds = [0, 1, 1, 0], [0, 1, 0, 0]
    m = llmkit.create("metric", "recall", average="macro", labels=[0, 1, 2], zero_division=0)
    m.update(preds, golds)
    theirs = skm.recall_score(golds, preds, average="macro", labels=[0, 1, 2], zero_division=0)
    assert float(m.compute()) == pytest.approx(theirs)
    cm = llmkit.create("metric", "confusion_matrix", labels=[2, 1, 0])
    cm.update(preds, golds)
    np.testing.assert_array_equal(
        cm.compute().to_numpy(), skm.confusion_matrix(golds, preds, labels=[2, 1, 0])
    )


def test_empty_input_is_a_clear_error() -> None:
    for name in ("accuracy", "precision", "recall", "f1", "exact_match"):
        m = llmkit.create("metric", name)
        m.update([], [])
        with pytest.raises(UsageError, match="no samples"):
            m.compute()
    cm = llmkit.create("metric", "confusion_matrix")
    assert cm.compute().matrix == []


def test_bad_inputs_are_usage_errors() -> None:
    f1 = llmkit.create("metric", "f1")  # binary by default, as scikit-learn
    f1.update([0, 1, 2], [0, 1, 2])
    with pytest.raises(UsageError, match="average='binary' but the data has 3 classes"):
        f1.compute()
    f1 = llmkit.create("metric", "f1", pos_label=5)
    f1.update([0, 1], [1, 0])
    with pytest.raises(UsageError, match="pos_label=5 is not one of"):
        f1.compute()
    acc = llmkit.create("metric", "accuracy")
    with pytest.raises(UsageError, match=r"shape \(3,\) but targets \(2,\)"):
        acc.update([1, 2, 3], [1, 2])
    with pytest.raises(UsageError, match="mixes strings and numbers"):
        acc.update(["a", 1], [1, 1])
    with pytest.raises(UsageError, match="non-integral floats"):
        acc.update([0.5, 0.2], [1, 0])
    m = llmkit.create("metric", "f1", average="macro")
    m.update(["a"], ["b"])
    with pytest.raises(UsageError, match="earlier batches had strings"):
        m.update([1], [2])
    with pytest.raises(llmkit.RegistryError, match="expected one of"):
        llmkit.create("metric", "f1", average="sample")
    with pytest.raises(llmkit.RegistryError, match="zero_division"):
        llmkit.create("metric", "recall", zero_division=2)


def test_score_is_a_float_with_details() -> None:
    acc = llmkit.create("metric", "accuracy")
    acc.update([1, 0, 1, 1], [1, 1, 1, 1])
    result = acc.compute()
    assert isinstance(result, Score) and isinstance(result, float)
    assert result == 0.75 and f"{result:.2f}" == "0.75"
    assert result.to_dict() == {"metric": "accuracy", "score": 0.75, "correct": 3, "total": 4}
    acc.reset()
    with pytest.raises(UsageError):
        acc.compute()


def test_exact_match() -> None:
    em = llmkit.create("metric", "exact_match")
    em.update(["Paris ", "london", "Rome"], ["Paris", "London", "Madrid"])
    assert float(em.compute()) == pytest.approx(1 / 3)
    em = llmkit.create("metric", "exact_match", ignore_case=True, ignore_punctuation=True)
    em.update(["paris!", "London."], ["Paris", "london"])
    assert float(em.compute()) == 1.0
    em = llmkit.create("metric", "exact_match", multiple_targets=True)
    em.update(["a b", [1, 2]], [["x", "a  b"], [[1, 2], [3]]])
    assert float(em.compute()) == 1.0
    with pytest.raises(UsageError, match="2 predictions but 1 targets"):
        em.update(["a", "b"], ["a"])
