"""Bad input: one line naming the parameter and the fix, exit code 2, nothing written."""

import pytest

from helpers import assert_usage_error, edit_params, files_under, run_cli


def test_unknown_backbone_lists_the_allowed_ones(project):
    result = run_cli("extract", "-c", "hazelnut_toy", "-b", "resnet9000", cwd=project)
    assert_usage_error(result, "resnet9000", "efficientnet_lite0", "efficientnet_lite2")
    assert files_under(project / "features") == []


def test_unknown_backbone_in_params_selection(project):
    edit_params(project, **{"run.backbones": ["nope"]})
    assert_usage_error(run_cli("summarize", cwd=project), "run.backbones", "nope", "efficientnet_lite1")


def test_unknown_category(project):
    assert_usage_error(run_cli("download", "-c", "carpet", cwd=project), "carpet", "run.categories")
    edit_params(project, **{"run.categories": ["carpet"]})
    assert_usage_error(run_cli("download", "-c", "carpet", cwd=project), "carpet", "hazelnut_toy")
    assert files_under(project / "data" / "sample") == []


@pytest.mark.parametrize("ratio", [0, -0.1, 1.5])
def test_ratio_outside_unit_interval(project, ratio):
    edit_params(project, **{"coreset.ratio": ratio})
    assert_usage_error(
        run_cli("coreset", "-c", "hazelnut_toy", "-b", "efficientnet_lite2", cwd=project), "coreset.ratio", "(0, 1]"
    )
    assert files_under(project / "features") == []


def test_missing_data_folder(project):
    result = run_cli("extract", "-c", "hazelnut_toy", "-b", "efficientnet_lite2", cwd=project)
    assert_usage_error(result, "data/sample/hazelnut_toy", "download")
    assert files_under(project / "features") == []


def test_missing_params_file(tmp_path):
    assert_usage_error(run_cli("summarize", cwd=tmp_path), "params.yaml")


@pytest.mark.parametrize(
    "bug",
    [
        TypeError("unsupported operand"),
        KeyError("threshold"),
        AssertionError(),
        AttributeError("x"),
        ZeroDivisionError(),
    ],
)
def test_a_programming_error_is_never_turned_into_a_users_one_line(bug):
    """One line and exit 2 are for what the user can fix; a bug keeps its traceback (exit 1) so it gets reported."""
    from patchcore import errors

    assert errors.failure(bug) is None
    assert errors.failure(OSError(2, "No such file or directory", "x")) is None  # not a write the user can fix either


def test_the_service_history_lets_a_bug_through_and_keeps_no_files(tmp_path):
    from patchcore.apps.service.history import History

    history = History(tmp_path / "state")
    with pytest.raises(TypeError):
        history.add(
            {"verdict": "good", "score": object()}, b"image", "png", b"heatmap", None
        )  # not JSON: a bug, not a 503
    assert list((tmp_path / "state/files").iterdir()) == []
    history.close()
