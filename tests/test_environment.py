import pytest

from lavis_sevila import _environment as env


def test_installed_set_has_no_errors():
    errors, _ = env.problems()
    assert errors == []


def test_a_breaking_version_is_reported_with_a_fix(monkeypatch):
    versions = {"salesforce-lavis": "1.0.2", "transformers": "4.56.2", "torch": "2.14.1", "numpy": "1.26.4"}
    monkeypatch.setattr(env, "_installed", versions.get)
    with pytest.raises(env.EnvironmentMismatch, match=r"transformers 4.56.2 .*<4.47") as error:
        env.check_environment()
    assert "make install" in str(error.value)


def test_untested_versions_warn_and_missing_lavis_fails(monkeypatch):
    versions = {"salesforce-lavis": "1.0.2", "transformers": "4.40.2", "torch": "2.14.1", "numpy": "1.26.4"}
    monkeypatch.setattr(env, "_installed", versions.get)
    with pytest.warns(UserWarning, match="transformers 4.40.2"):
        env.check_environment()
    with pytest.raises(env.EnvironmentMismatch):
        env.check_environment(strict=True)
    monkeypatch.setattr(env, "_installed", {**versions, "salesforce-lavis": None}.get)
    with pytest.raises(env.EnvironmentMismatch, match="salesforce-lavis is not installed"):
        env.check_environment()
