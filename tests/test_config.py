"""``[tool.aitune]`` in pyproject.toml: parsing, per-check precedence, and errors that name the key."""

from __future__ import annotations

import textwrap

import pytest

from aitune_ci.config import Acknowledgement, ConfigError, Policy, RepoConfig

FULL = """
[project]
name = "user-repo"

[tool.aitune]
threshold = 0.04
alpha = 0.1
sqnr_drop_db = 2.5
max_confirmations = 3
noise_k = 2.5
quarantine = ["tune_x[tensorrt]", "tune_flaky"]

[tool.aitune.thresholds]
tune_resnet = 0.08
"tune_resnet[inductor]" = 0.12

[tool.aitune.acknowledged]
"tune_resnet[aoti]" = { reason = "expected 8% slower: fused attention off (#123)", max_slowdown = 0.1 }
"tune_bert[torchao-int8wo]" = "new quantizer, SQNR 2 dB lower"
"""


def write(tmp_path, text: str):
    path = tmp_path / "pyproject.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_full_table_is_parsed(tmp_path):
    config = RepoConfig.load(write(tmp_path, FULL))
    assert config.defaults == Policy(threshold=0.04, alpha=0.1, sqnr_drop_db=2.5, max_confirmations=3, noise_k=2.5)
    assert config.thresholds == {"tune_resnet": 0.08, "tune_resnet[inductor]": 0.12}
    assert config.acknowledged["tune_resnet[aoti]"] == Acknowledgement(
        "expected 8% slower: fused attention off (#123)", 0.1
    )
    assert config.acknowledged["tune_bert[torchao-int8wo]"] == Acknowledgement("new quantizer, SQNR 2 dB lower")
    assert config.quarantine == frozenset({"tune_x[tensorrt]", "tune_flaky"})


def test_threshold_precedence_backend_then_fixture_then_default(tmp_path):
    config = RepoConfig.load(write(tmp_path, FULL))
    assert config.policy_for("tune_resnet", "inductor").threshold == 0.12
    assert config.policy_for("tune_resnet", "eager").threshold == 0.08
    assert config.policy_for("tune_bert", "eager").threshold == 0.04
    # --aitune-threshold replaces the default only; keys written for a check still win.
    cli = config.with_default_threshold(0.2)
    assert cli.policy_for("tune_bert", "eager").threshold == 0.2
    assert cli.policy_for("tune_resnet", "inductor").threshold == 0.12


def test_policy_carries_acknowledgement_and_quarantine_of_that_check_only(tmp_path):
    config = RepoConfig.load(write(tmp_path, FULL))
    assert config.policy_for("tune_resnet", "aoti").acknowledged.max_slowdown == 0.1
    assert config.policy_for("tune_resnet", "inductor").acknowledged is None
    assert config.policy_for("tune_x", "tensorrt").quarantined
    assert not config.policy_for("tune_x", "inductor").quarantined
    assert config.policy_for("tune_flaky", "inductor").quarantined  # a whole fixture
    assert config.policy_for("tune_resnet", "eager").max_confirmations == 3


def test_missing_file_or_table_gives_defaults(tmp_path):
    assert RepoConfig.load(tmp_path / "nope.toml").policy_for("tune_a", "eager") == Policy()
    config = RepoConfig.load(write(tmp_path, "[project]\nname = 'x'\n"))
    assert config.policy_for("tune_a", "eager") == Policy()


@pytest.mark.parametrize(
    ("table", "key", "problem"),
    [
        ('threshold = "5"', "threshold", 'expected a fraction such as 0.05 or a percentage such as "5%"'),
        ("threshold = true", "threshold", "expected a fraction such as 0.05"),
        ("threshold = 5", "threshold", 'reads as a fraction, 500%: write "5%" for 5 percent, or "500%" if you mean it'),
        ("[tool.aitune.thresholds]\ntune_a = 1.5", "thresholds.tune_a", 'write "1.5%" for 1.5 percent'),
        ("alpha = 1.5", "alpha", "within (0, 1)"),
        ("max_confirmations = 1.5", "max_confirmations", "an integer"),
        ("treshold = 0.05", "treshold", "unknown key (treshold (did you mean threshold?)); the known keys are"),
        ('quarantine = "tune_x[trt]"', "quarantine", "expected a list"),
        ('quarantine = ["tune x"]', "quarantine.tune x", "keys name a fixture or one check"),
        ("[tool.aitune.thresholds]\ntune_a = -1", "thresholds.tune_a", "expected a number >= 0"),
        ('[tool.aitune.thresholds]\n"tune_a[" = 0.1', "thresholds.tune_a[", "keys name a fixture"),
        ("[tool.aitune.acknowledged]\ntune_a = 3", "acknowledged.tune_a", "expected a reason string"),
        ("[tool.aitune.acknowledged]\ntune_a = { max_slowdown = 0.1 }", "acknowledged.tune_a.reason", "required"),
        (
            '[tool.aitune.acknowledged]\ntune_a = { reason = "x", max_slowdown = "ten" }',
            "acknowledged.tune_a.max_slowdown",
            "expected a fraction such as 0.05",
        ),
        (
            '[tool.aitune.acknowledged]\ntune_a = { reason = "x", max_slowdown = 10 }',
            "acknowledged.tune_a.max_slowdown",
            'reads as a fraction, 1000%: write "10%"',
        ),
        (
            '[tool.aitune.acknowledged]\ntune_a = { reason = "x", until = 3 }',
            "acknowledged.tune_a.until",
            "unknown key",
        ),
    ],
)
def test_bad_values_name_the_file_and_key(tmp_path, table, key, problem):
    path = write(tmp_path, "[tool.aitune]\n" + table + "\n")
    with pytest.raises(ConfigError) as info:
        RepoConfig.load(path)
    assert info.value.key == key
    assert problem in info.value.problem
    assert str(path) in str(info.value) and f"[tool.aitune] {key}:" in str(info.value)


def test_invalid_toml_names_the_file(tmp_path):
    path = write(tmp_path, "[tool.aitune\nthreshold = ")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        RepoConfig.load(path)
    assert str(path) in str(info.value)


def test_keys_naming_no_collected_check_are_listed_with_the_closest_name(tmp_path):
    """A typo'd key in a per-check table was ignored in silence."""
    path = tmp_path / "pyproject.toml"
    path.write_text(
        "[tool.aitune]\n"
        'quarantine = ["tune_tiny[onxruntime]"]\n'
        "[tool.aitune.thresholds]\n"
        'tune_tiny = 0.5\n"tune_tinny[eager]" = 0.5\n'
        "[tool.aitune.acknowledged]\n"
        '"tune_tiny[eager]" = "known"\n'
    )
    config = RepoConfig.load(path)
    checks = {"tune_tiny[eager]", "tune_tiny[onnxruntime]", "tune_tiny[selection]"}
    assert config.keys_matching_nothing(checks) == [
        f'{path}: [tool.aitune.thresholds]: "tune_tinny[eager]" matches no check collected in this run '
        '(did you mean "tune_tiny[eager]"?)',
        f'{path}: [tool.aitune] quarantine: "tune_tiny[onxruntime]" matches no check collected in this run '
        '(did you mean "tune_tiny[onnxruntime]"?)',
    ]
    # a run of one folder's fixtures: keys of fixtures it did not collect are left alone
    assert config.keys_matching_nothing({"tune_other[eager]"}, some_fixtures=True) == []
    # ... but a near miss of a collected fixture is a typo all the same
    folder = RepoConfig.from_table({"thresholds": {"tune_resnt[aoti]": 0.1, "tune_other[eager]": 0.1}}, source="p")
    assert folder.keys_matching_nothing({"tune_resnet[aoti]"}, some_fixtures=True) == [
        'p: [tool.aitune.thresholds]: "tune_resnt[aoti]" matches no check collected in this run '
        '(did you mean "tune_resnet[aoti]"?)'
    ]
    # --aitune-backends left checks out: a key is matched on its fixture alone
    assert config.keys_matching_nothing({"tune_tiny[eager]"}, fixtures_only=True) == [
        f'{path}: [tool.aitune.thresholds]: "tune_tinny[eager]" matches no check collected in this run '
        '(did you mean "tune_tiny[eager]"?)'
    ]
